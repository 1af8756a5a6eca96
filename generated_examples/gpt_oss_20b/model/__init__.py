"""Model definition: args, single-device model, and the transformers state dict adapter."""

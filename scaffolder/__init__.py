"""model-scaffolder: a verified, PyTorch-native training package from a Hugging Face config.json."""

__version__ = "0.1.0"

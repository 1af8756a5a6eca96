"""Parallelism for this model: TP plan, activation checkpointing, compile, FSDP2, pipeline."""

"""Runtime that generated model packages plug into: protocols, parallelism helpers, trainer."""

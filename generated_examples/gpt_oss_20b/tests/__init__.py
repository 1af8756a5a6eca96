"""Tests of the generated package; transformers is the numerical oracle."""

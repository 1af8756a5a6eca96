"""Parallelism on PyTorch's distributed stack: degrees and mesh, FSDP2/AC/compile, pipelining."""

from runtime.distributed.parallel_dims import ParallelDims

__all__ = ["ParallelDims"]

"""Process-group setup, seeding and gradient clipping across DTensors and pipeline stages."""

from __future__ import annotations

import logging
import math
import os
import socket
import sys
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta
from typing import NoReturn

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def world_size_from_env() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(timeout_s: int = 600) -> torch.device:
    """Join the default process group (once) and return this rank's device.

    Under torchrun the environment names the rendezvous; a plain ``python -m runtime.train`` runs
    as a one-rank group on an in-process store (no port, so nothing another process starts at
    the same moment can take it). CUDA ranks use NCCL (plus gloo for CPU collectives); CPU
    ranks use gloo.
    """
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if dist.is_initialized():
        return device
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    timeout = timedelta(seconds=timeout_s)
    if "RANK" in os.environ:
        store, rank = _attempt_store(timeout), int(os.environ["RANK"])
    else:
        store, rank = dist.HashStore(), 0
    dist.init_process_group(
        backend, store=store, rank=rank, world_size=world_size_from_env(), timeout=timeout
    )
    return device


def exit_process(code: int) -> NoReturn:
    """Destroy the process group, flush, and end the process without interpreter teardown.

    For torchrun entry points, once their work is written. Gloo's worker threads can still hold
    tensors when Python finalizes, and freeing them then can abort a rank that has succeeded
    ("terminate called without an active exception", exit -6; seen once in a 2-rank check
    under a loaded ``make test``). Everything here is already flushed and closed, so nothing is
    lost by skipping finalization.
    """
    if dist.is_initialized():
        dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _attempt_store(timeout: timedelta) -> dist.Store:
    """The rendezvous store, with keys private to this torchrun restart attempt.

    torchrun's agent keeps one TCPStore across restarts; without a per-attempt prefix, restarted
    workers would read the killed workers' gloo addresses and fail to connect.
    """
    rank = int(os.environ["RANK"])
    agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = dist.TCPStore(
        host_name=os.environ["MASTER_ADDR"],
        port=int(os.environ["MASTER_PORT"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        is_master=rank == 0 and not agent_store,
        timeout=timeout,
    )
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"/runtime/attempt_{attempt}", store)


def set_seed(seed: int, deterministic: bool) -> None:
    """Seed every RNG the same on all ranks; optionally force deterministic kernels."""
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _group_key(grad: torch.Tensor) -> tuple:
    if isinstance(grad, DTensor):
        return (grad.device_mesh, tuple(grad.placements))
    return (None, ())


def _group_grads(parameters: Iterable[torch.Tensor]) -> dict[tuple, list[torch.Tensor]]:
    groups: dict[tuple, list[torch.Tensor]] = defaultdict(list)
    for param in parameters:
        if param.grad is not None:
            groups[_group_key(param.grad)].append(param.grad)
    return groups


def _norm_of(grads: list[torch.Tensor], norm_type: float) -> torch.Tensor:
    total = torch.nn.utils.get_total_norm(grads, norm_type=norm_type, foreach=True)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    return total.float()


def clip_grad_norm_(
    parameters: Iterable[torch.Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    pp_mesh: DeviceMesh | None = None,
) -> torch.Tensor:
    """Clip gradients by their global norm; returns the norm before clipping.

    Gradients may be DTensors on different meshes and placements (FSDP, TP, both): each group
    reduces to a full norm, the groups combine, and pipeline stages add their parts over
    ``pp_mesh``. Every rank ends with the same norm and scale.
    """
    groups = _group_grads(parameters)
    norms = [_norm_of(grads, norm_type) for grads in groups.values()]
    if norms:
        stacked = torch.stack([norm.to(norms[0].device) for norm in norms])
        total = torch.linalg.vector_norm(stacked, ord=norm_type)
    else:
        total = torch.zeros((), device="cpu")
    if pp_mesh is not None:
        total = _reduce_over_stages(total, norm_type, pp_mesh)
    scale = min(1.0, max_norm / (float(total) + 1e-6))
    if scale < 1.0:
        for grads in groups.values():
            torch._foreach_mul_(grads, scale)
    return total


def _reduce_over_stages(total: torch.Tensor, norm_type: float, pp_mesh: DeviceMesh):
    group = pp_mesh.get_group()
    if math.isinf(norm_type):
        dist.all_reduce(total, op=dist.ReduceOp.MAX, group=group)
        return total
    total = total**norm_type
    dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
    return total ** (1.0 / norm_type)

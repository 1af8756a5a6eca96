"""Cross-entropy loss over next-token labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

IGNORE_INDEX = -100
# Rows of logits handled at a time in the eager loss: about 8 MiB of fp32, so the log-softmax,
# exp and label update of a chunk run while it is still in cache.
_CHUNK_ELEMENTS = 2**21


class FusedCrossEntropy(torch.autograd.Function):
    """Mean token cross entropy whose forward also computes its gradient.

    The gradient of mean cross entropy is ``(softmax(logits) - one_hot(label)) / n``: the
    forward writes the log-softmax into the gradient buffer, reads the loss off it, then
    overwrites it with the softmax minus one at the label, chunk by chunk while the chunk is in
    cache. Backward only scales it by the incoming gradient. Compared with
    ``F.cross_entropy`` (log-softmax out, then in backward a zero-filled one-hot gradient and a
    log-softmax backward) that is one logits-sized buffer and several passes over it fewer.
    Labels equal to ``ignore_index`` contribute neither loss nor gradient, as in
    ``F.cross_entropy``. The saved gradient is scaled in place: one backward per forward.
    """

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int
    ) -> torch.Tensor:
        rows, vocab = logits.shape
        grad = torch.empty(rows, vocab, dtype=torch.float32, device=logits.device)
        valid = labels != ignore_index
        safe_labels = torch.where(valid, labels, 0).unsqueeze(1)
        minus_one = -valid.unsqueeze(1).float()
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        chunk = rows if logits.is_cuda else max(1, _CHUNK_ELEMENTS // vocab)
        for start in range(0, rows, chunk):
            part = slice(start, start + chunk)
            out, chunk_logits = grad[part], logits[part].float()
            torch.log_softmax(chunk_logits, dim=-1, out=out)
            total -= (out.gather(1, safe_labels[part]).squeeze(1) * valid[part]).sum()
            # softmax rather than exp_ of the log-softmax: aten's exp leaves its vectorized
            # path for results that underflow (logit gaps over ~87), 20x slower on CPU.
            torch.softmax(chunk_logits, dim=-1, out=out)
            out.scatter_add_(1, safe_labels[part], minus_one[part])
        count = valid.sum()
        if logits.is_cuda or not bool(valid.all()):  # no host sync on GPU
            grad.mul_(valid.unsqueeze(1))
        ctx.save_for_backward(grad, count)
        ctx.logits_dtype = logits.dtype
        ctx.used = False
        return total / count

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if ctx.used:
            raise RuntimeError("FusedCrossEntropy supports a single backward per forward")
        ctx.used = True
        grad, count = ctx.saved_tensors
        grad.mul_(grad_output / count)
        return grad.to(ctx.logits_dtype), None, None


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token cross entropy in fp32; ``logits [B, L, V]``, ``labels [B, L]``.

    DTensor logits (a tensor-parallel output layer that keeps them sharded) are gathered first.
    Without autograd (evaluation) it is plain ``F.cross_entropy``.
    """
    if isinstance(logits, DTensor):
        logits = logits.full_tensor()
    flat_logits, flat_labels = logits.flatten(0, 1), labels.flatten(0, 1)
    if torch.is_grad_enabled() and flat_logits.requires_grad:
        return FusedCrossEntropy.apply(flat_logits, flat_labels, IGNORE_INDEX)
    return F.cross_entropy(flat_logits.float(), flat_labels, ignore_index=IGNORE_INDEX)


def reference_cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy`` on fp32 logits: what ``torch.compile`` fuses by itself."""
    if isinstance(logits, DTensor):
        logits = logits.full_tensor()
    return F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(0, 1), ignore_index=IGNORE_INDEX
    )


def build_cross_entropy_loss(job_config: Any = None) -> Callable[..., torch.Tensor]:
    """The loss function; compiled when ``compile.enable`` and ``"loss"`` is a component.

    Eager runs use the fused loss above; compiled runs give inductor the plain
    ``F.cross_entropy`` to fuse.
    """
    compile_config = getattr(job_config, "compile", None)
    if compile_config is not None and compile_config.enable and "loss" in compile_config.components:
        return torch.compile(reference_cross_entropy_loss)
    return cross_entropy_loss

"""Cross-entropy loss over next-token labels."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard

IGNORE_INDEX = -100
# Rows of logits handled at a time in the eager loss: about 8 MiB of fp32, so the max, softmax,
# row weighting and label update of a chunk run while it is still in cache.
_CHUNK_ELEMENTS = 2**21
# Logits elements of one chunk of the fused output loss: 64 MiB of fp32 on accelerators, 256 MiB
# on CPU. Every chunk after the first re-reads and re-writes the whole weight gradient, a
# memory-bound pass on CPU: at vocabulary 151936 (1024 tokens, hidden 512), output projection
# and loss took 6.0 s with 64 MiB chunks and 5.3 s with 256 MiB ones, as long as full logits
# (docs/benchmarks.md).
_OUTPUT_CHUNK_ELEMENTS = 2**24
_CPU_OUTPUT_CHUNK_ELEMENTS = 2**26


def _owned(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` and the storage it views are an operation's output, not a leaf."""
    base = tensor._base if tensor._base is not None else tensor
    return not tensor.is_leaf and not base.is_leaf


def _gradient_buffer(logits: torch.Tensor) -> torch.Tensor:
    """Where the fused losses write the logits' fp32 gradient: over the logits themselves when
    they are float32, contiguous and an operation's output (see ``FusedCrossEntropy``), else a
    fresh buffer."""
    if logits.dtype == torch.float32 and logits.is_contiguous() and _owned(logits):
        return logits.detach()
    return torch.empty(logits.shape, dtype=torch.float32, device=logits.device)


def _pieces(rows: int, vocab: int, device: torch.device) -> Iterator[slice]:
    """Slices of rows the losses' passes take at a time: about ``_CHUNK_ELEMENTS`` logits (in
    cache) on CPU, all rows on GPU."""
    step = rows if device.type == "cuda" else max(1, _CHUNK_ELEMENTS // vocab)
    for start in range(0, rows, step):
        yield slice(start, start + step)


def _softmax_chunks(
    logits: torch.Tensor, grad: torch.Tensor, logsumexp: torch.Tensor
) -> Iterator[slice]:
    """Write the rows' softmax into ``grad`` and their logsumexp into ``logsumexp``, a piece of
    rows at a time (``_pieces``); yields each piece's rows while they are still in cache."""
    for part in _pieces(*logits.shape, logits.device):
        out, source = grad[part], logits[part].float()
        row_max = source.amax(dim=-1)
        # The softmax kernel's exp stays vectorized where results underflow (aten's exp_ of
        # shifted logits leaves that path for gaps over ~87: 20x slower on CPU).
        torch.softmax(source, dim=-1, out=out)
        # The largest probability is 1 / sum(exp(x - max)): never underflows (>= 1 / vocab).
        logsumexp[part] = row_max - out.amax(dim=-1).log()
        yield part


@dataclass(frozen=True)
class _Labels:
    """Next-token labels against logits over ``vocab`` ids from ``vocab_start`` (the whole
    vocabulary, or a tensor-parallel rank's shard of it)."""

    valid: torch.Tensor  # not ignore_index
    count: torch.Tensor  # valid labels in all
    weights: torch.Tensor  # each row's weight in the mean: 1 / count, or 0 where ignored
    owned: torch.Tensor  # valid and among these ids
    local: torch.Tensor  # the label's column here (0 where not owned)

    @classmethod
    def of(cls, labels: torch.Tensor, ignore_index: int, vocab_start: int, vocab: int) -> _Labels:
        valid = labels != ignore_index
        count = valid.sum()
        local = labels - vocab_start
        owned = valid & (local >= 0) & (local < vocab)
        return cls(valid, count, valid / count, owned, torch.where(owned, local, 0))

    def rows(self, part: slice) -> _Labels:
        """The labels of rows ``part`` (their weights still over all rows' count)."""
        return _Labels(
            self.valid[part], self.count, self.weights[part], self.owned[part], self.local[part]
        )

    def loss(self, logsumexp: torch.Tensor, label_logits: torch.Tensor) -> torch.Tensor:
        """The mean over valid rows of ``logsumexp - label_logit``."""
        return ((logsumexp - label_logits) * self.valid).sum() / self.count


def _cross_entropy_gradient(
    logits: torch.Tensor,
    grad: torch.Tensor,
    labels: _Labels,
    group: dist.ProcessGroup | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write the mean cross entropy's gradient of ``logits [rows, V]`` into ``grad`` (which may
    be the logits' own storage): each row's softmax times its weight, minus its weight at the
    label. Returns each row's logsumexp and label logit, for ``_Labels.loss``.

    With ``group``, ``logits`` are this rank's vocabulary shard: two all-reduces over
    ``[rows]`` vectors (the max, then the sum of ``exp(local - max)`` with the label's logit,
    which only its owner contributes) give the global logsumexp, and the local softmax times
    ``exp(local_lse - logsumexp)`` is the global softmax on this shard.
    """
    rows, vocab = logits.shape
    label_logits = logits.gather(1, labels.local.unsqueeze(1)).squeeze(1).float() * labels.owned
    at_label = torch.arange(rows, device=logits.device) * vocab + labels.local
    subtract = labels.weights * labels.owned
    flat = grad.view(-1)
    local_lse = torch.empty(rows, dtype=torch.float32, device=logits.device)
    if group is None:
        # Softmax, row weights and the label's subtraction while each piece is in cache.
        for part in _softmax_chunks(logits, grad, local_lse):
            grad[part].mul_(labels.weights[part].unsqueeze(1))
            flat.index_add_(0, at_label[part], -subtract[part])
        return local_lse, label_logits
    for _part in _softmax_chunks(logits, grad, local_lse):
        pass
    global_max = local_lse.clone()
    dist.all_reduce(global_max, op=dist.ReduceOp.MAX, group=group)
    sums = torch.stack([(local_lse - global_max).exp(), label_logits])
    dist.all_reduce(sums, group=group)
    logsumexp = global_max + sums[0].log()
    row_scale = labels.weights * (local_lse - logsumexp).exp()
    for part in _pieces(rows, vocab, logits.device):
        grad[part].mul_(row_scale[part].unsqueeze(1))
        flat.index_add_(0, at_label[part], -subtract[part])
    return logsumexp, sums[1]


def _saved_gradient(ctx: Any, grad_output: torch.Tensor, name: str) -> torch.Tensor:
    """The gradient a fused loss's forward saved, times ``grad_output``, in the logits' dtype."""
    if ctx.used:
        raise RuntimeError(f"{name} supports a single backward per forward")
    ctx.used = True
    (grad,) = ctx.saved_tensors
    # A training step's loss gets gradient 1: skip the pass (a free check on CPU only).
    if grad_output.is_cuda or grad_output.item() != 1.0:
        grad.mul_(grad_output)
    return grad.to(ctx.logits_dtype)


class FusedCrossEntropy(torch.autograd.Function):
    """Mean token cross entropy whose forward also computes its gradient.

    The gradient of mean cross entropy is ``(softmax(logits) - one_hot(label)) / n``. Chunk by
    chunk, while the chunk is in cache, the forward takes each row's max, writes the softmax,
    weights each row by ``1 / n`` and subtracts the label's weight. The loss needs no
    log-softmax pass: the largest probability is ``1 / sum(exp(x - max))``, so
    ``logsumexp = max - log(max(p))`` (never underflows: ``max(p) >= 1 / vocab``) and a row's
    loss is ``logsumexp - x[label]``. Backward returns the buffer (scaled by the incoming
    gradient unless it is 1). Compared with ``F.cross_entropy`` (log-softmax out, then in
    backward a zero-filled one-hot gradient and a log-softmax backward) that is one logits-sized
    buffer and several passes over it fewer.

    **The gradient is written over the logits** when they are float32, contiguous and the
    output of an operation (not a leaf the caller holds): nothing reads a model's logits after
    its loss in training, and an operation that saved them for its backward fails loudly
    (autograd's in-place check) instead of computing a wrong gradient. That saves allocating,
    and on CPU page-faulting, one more logits-sized buffer per step (Liger-Kernel's cross
    entropy does the same on GPU). Read anything you need from the logits before the loss;
    other logits (leaves, bf16, strided) get a fresh buffer.

    Labels equal to ``ignore_index`` contribute neither loss nor gradient, as in
    ``F.cross_entropy``. One backward per forward: the saved gradient is scaled in place.
    """

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int
    ) -> torch.Tensor:
        grad = _gradient_buffer(logits)
        targets = _Labels.of(labels, ignore_index, 0, logits.shape[1])
        logsumexp, label_logits = _cross_entropy_gradient(logits, grad, targets)
        ctx.save_for_backward(grad)
        ctx.logits_dtype = logits.dtype
        ctx.used = False
        return targets.loss(logsumexp, label_logits)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return _saved_gradient(ctx, grad_output, "FusedCrossEntropy"), None, None


class VocabParallelCrossEntropy(torch.autograd.Function):
    """Mean token cross entropy of logits sharded over the vocabulary (loss parallel).

    Each tensor-parallel rank holds ``logits[:, vocab_start : vocab_start + V_local]`` (the
    output projection's column shards, never gathered) and the same labels. The forward works
    like ``FusedCrossEntropy`` on the local shard: chunk by chunk it writes the shard's softmax
    into the gradient buffer and reads the shard's logsumexp off its largest probability. Two
    all-reduces over ``[rows]`` vectors then give the global logsumexp (max, then the sum of
    ``exp(local - max)`` together with the label's logit, which only its owner contributes),
    and a second pass rescales the buffer to the global softmax weighted by ``1 / count``
    minus the one-hot at the label. The loss is the same on every rank; backward returns this
    rank's gradient shard with no communication.
    """

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        labels: torch.Tensor,
        vocab_start: int,
        group: dist.ProcessGroup,
        ignore_index: int,
    ) -> torch.Tensor:
        grad = _gradient_buffer(logits)
        targets = _Labels.of(labels, ignore_index, vocab_start, logits.shape[1])
        logsumexp, label_logits = _cross_entropy_gradient(logits, grad, targets, group)
        ctx.save_for_backward(grad)
        ctx.logits_dtype = logits.dtype
        ctx.used = False
        return targets.loss(logsumexp, label_logits)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad = _saved_gradient(ctx, grad_output, "VocabParallelCrossEntropy")
        return grad, None, None, None, None


def _vocab_shard(logits: DTensor) -> tuple[int, dist.ProcessGroup] | None:
    """``(first vocabulary id, process group)`` of logits sharded over their last dim only."""
    if logits.device_mesh.ndim != 1 or logits.placements[0] != Shard(logits.ndim - 1):
        return None
    mesh, vocab = logits.device_mesh, logits.shape[-1]
    # DTensor shards like torch.chunk: ceil(vocab / n) columns a rank, fewer on the last ones.
    columns = -(-vocab // mesh.size())
    return min(vocab, columns * mesh.get_local_rank()), mesh.get_group()


class FusedOutputCrossEntropy(torch.autograd.Function):
    """Output projection and mean token cross entropy in one pass over chunks of tokens.

    ``hidden [N, D]`` are the final hidden states, ``weight [V, D]`` the output projection
    (or this rank's rows of it, ``V`` columns from ``vocab_start``, under tensor parallelism).
    Chunk by chunk (``chunk`` tokens, the same on every rank), the forward computes the chunk's
    logits into a buffer that every chunk reuses (through ``transform``, the model's
    ``output_transform``, where it has one), writes their softmax into that buffer a cache-sized
    piece of rows at a time, reads the loss off it as ``FusedCrossEntropy`` does (with the two
    all-reduces of ``VocabParallelCrossEntropy`` when ``group`` is given), turns it into the
    gradient of the logits and immediately multiplies it into the gradients of ``hidden`` and
    ``weight``. Training never holds ``[N, V]`` logits, only one ``[chunk, V]`` buffer. Backward
    returns the saved gradients (scaled by the incoming gradient unless it is 1); under tensor
    parallelism the hidden-state gradient is this rank's partial sum.
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        vocab_start: int,
        group: dist.ProcessGroup | None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None,
        chunk: int,
        ignore_index: int,
    ) -> torch.Tensor:
        rows, vocab = hidden.shape[0], weight.shape[0]
        targets = _Labels.of(labels, ignore_index, vocab_start, vocab)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.empty(weight.shape, dtype=torch.float32, device=weight.device)
        # One chunk buffer for the whole pass: the chunk's logits, then (over them) their
        # softmax and gradient. fp32 logits without a transform are multiplied straight into it.
        buffer = torch.empty(min(chunk, rows), vocab, dtype=torch.float32, device=hidden.device)
        direct = transform is None and hidden.dtype == weight.dtype == torch.float32
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, rows, chunk):
            part = slice(start, start + chunk)
            h = hidden[part]
            p = buffer[: h.shape[0]]
            if direct:
                logits = torch.mm(h, weight.t(), out=p)
            else:
                projected = (h @ weight.t()).float()
                if transform is not None:
                    projected.requires_grad_()
                    with torch.enable_grad():
                        logits = transform(projected)
                else:
                    logits = projected
            rows_here = targets.rows(part)
            logsumexp, label_logits = _cross_entropy_gradient(logits.detach(), p, rows_here, group)
            # Summed here, divided by the count of all rows at the end.
            total += ((logsumexp - label_logits) * rows_here.valid).sum()
            grad_logits = p
            if transform is not None:
                (grad_logits,) = torch.autograd.grad(logits, projected, p)
            grad_logits = grad_logits.to(hidden.dtype)
            torch.mm(grad_logits, weight, out=grad_hidden[part])
            if start == 0:
                torch.mm(grad_logits.t().float(), h.float(), out=grad_weight)
            else:
                grad_weight.addmm_(grad_logits.t().float(), h.float())
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total / targets.count

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_output.is_cuda or grad_output.item() != 1.0:
            grad_hidden = grad_hidden * grad_output
            grad_weight = grad_weight * grad_output
        return grad_hidden, grad_weight.to(ctx.weight_dtype), None, None, None, None, None, None


# ``training.fused_output_loss = "auto"`` fuses from 2^26 logits per micro-batch (256 MiB of fp32,
# e.g. 1024 tokens at a vocabulary of 65536): below that the full logits cost little more memory
# than the fused loss's chunk buffer, and computing them is a few percent faster on CPU
# (``python -m bench.output_loss``; docs/benchmarks.md).
FUSED_OUTPUT_MIN_LOGITS = 2**26


def _output_chunk_elements(device: torch.device) -> int:
    """Logits elements per chunk of the fused output loss on ``device``."""
    return _CPU_OUTPUT_CHUNK_ELEMENTS if device.type == "cpu" else _OUTPUT_CHUNK_ELEMENTS


def wants_fused_output(setting: str, model: nn.Module, logits_per_microbatch: int) -> bool:
    """Whether to run ``model``'s output projection inside the loss for ``setting`` (``"on"``,
    ``"off"`` or ``"auto"``) and micro-batches of ``logits_per_microbatch`` logits."""
    if setting == "off" or not supports_fused_output(model):
        return False
    return setting == "on" or logits_per_microbatch >= FUSED_OUTPUT_MIN_LOGITS


def supports_fused_output(model: nn.Module) -> bool:
    """Whether ``model`` follows ``runtime.protocols.model.FusedOutputProtocol``: a
    ``skip_output`` switch and an output projection without bias."""
    output = getattr(model, "output", None)
    return hasattr(model, "skip_output") and isinstance(output, nn.Linear) and output.bias is None


def fused_output_cross_entropy_loss(
    model: nn.Module, hidden: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean token cross entropy of ``model.output`` applied to ``hidden [B, L, D]``.

    ``hidden`` is what ``model`` returns with ``skip_output`` set (the final normed hidden
    states; see ``runtime.protocols.model``). The output projection runs inside the loss, chunk
    by chunk (``FusedOutputCrossEntropy``), followed by ``model.output_transform`` where the
    model has one. Under tensor parallelism (``output.weight`` sharded over the vocabulary,
    ``hidden`` a DTensor), hidden states are gathered once and each rank works on its own
    vocabulary rows; their gradient goes back as a partial sum.
    """
    weight, group, vocab_start = model.output.weight, None, 0
    rows_per_rank = weight.shape[0]
    transform = getattr(model, "output_transform", None)
    if isinstance(weight, DTensor):
        mesh = weight.device_mesh
        if mesh.ndim != 1 or weight.placements[0] != Shard(0):
            raise ValueError(f"the fused output loss needs rows sharded on one mesh: {weight}")
        # Sharded like torch.chunk; every rank takes chunks of the same number of tokens, so
        # that the chunks' all-reduces pair up.
        rows_per_rank = -(-weight.shape[0] // mesh.size())
        vocab_start = min(weight.shape[0], rows_per_rank * mesh.get_local_rank())
        group, weight = mesh.get_group(), weight.to_local()
        if isinstance(hidden, DTensor):
            hidden = hidden.redistribute(hidden.device_mesh, [Replicate()])
            hidden = hidden.to_local(grad_placements=[Partial()])
    return FusedOutputCrossEntropy.apply(
        hidden.flatten(0, 1),
        weight,
        labels.flatten(0, 1),
        vocab_start,
        group,
        transform,
        max(1, _output_chunk_elements(weight.device) // rows_per_rank),
        IGNORE_INDEX,
    )


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token cross entropy in fp32; ``logits [B, L, V]``, ``labels [B, L]``.

    Logits sharded over the vocabulary (a tensor-parallel output projection with
    ``output_layouts=Shard(-1)``) get the vocabulary-parallel loss and are never gathered;
    other DTensor logits are gathered first. Without autograd (evaluation) it is plain
    ``F.cross_entropy``.
    """
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return reference_cross_entropy_loss(logits, labels)
    if isinstance(logits, DTensor):
        shard = _vocab_shard(logits)
        if shard is not None:
            vocab_start, group = shard
            local = logits.to_local().flatten(0, 1)
            return VocabParallelCrossEntropy.apply(
                local, labels.flatten(0, 1), vocab_start, group, IGNORE_INDEX
            )
        logits = logits.full_tensor()
    return FusedCrossEntropy.apply(logits.flatten(0, 1), labels.flatten(0, 1), IGNORE_INDEX)


def reference_cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy`` on fp32 logits: what ``torch.compile`` fuses by itself."""
    if isinstance(logits, DTensor):
        logits = logits.full_tensor()
    return F.cross_entropy(
        logits.flatten(0, 1).float(), labels.flatten(0, 1), ignore_index=IGNORE_INDEX
    )


def build_cross_entropy_loss(job_config: Any = None) -> Callable[..., torch.Tensor]:
    """The loss function; compiled on GPU when ``compile.enable`` and ``"loss"`` is a component.

    Eager runs use the fused loss above. Compiled runs give inductor the plain
    ``F.cross_entropy`` to fuse for CUDA logits; CPU logits keep the fused eager loss, which
    measured faster than inductor's CPU code (benchmark step with compiled blocks: 1.246 s with
    it, 1.350 s with the compiled ``F.cross_entropy``; docs/benchmarks.md).
    """
    compile_config = getattr(job_config, "compile", None)
    enabled = compile_config is not None and compile_config.enable
    if not enabled or "loss" not in compile_config.components:
        return cross_entropy_loss
    compiled = torch.compile(reference_cross_entropy_loss)

    def compiled_cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.device.type == "cpu":
            return cross_entropy_loss(logits, labels)
        return compiled(logits, labels)

    return compiled_cross_entropy_loss

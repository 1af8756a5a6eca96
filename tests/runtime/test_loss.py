"""The fused cross entropy against F.cross_entropy: loss, gradient, ignored labels, chunking."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from runtime_helpers import child_env, torchrun_args

from runtime.components import loss as loss_module
from runtime.components.loss import (
    FusedCrossEntropy,
    build_cross_entropy_loss,
    cross_entropy_loss,
    fused_output_cross_entropy_loss,
)
from runtime.config import JobConfig


def _reference(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(0, 1))


@pytest.mark.parametrize("chunk_elements", [2**21, 64])  # one chunk; many, with a ragged last one
def test_fused_loss_and_gradient_match_cross_entropy(monkeypatch, chunk_elements):
    monkeypatch.setattr(loss_module, "_CHUNK_ELEMENTS", chunk_elements)
    generator = torch.Generator().manual_seed(0)
    logits = (4 * torch.randn(3, 7, 11, generator=generator)).requires_grad_()
    labels = torch.randint(0, 11, (3, 7), generator=generator)
    labels[0, 2] = labels[2, 6] = -100

    loss = cross_entropy_loss(logits, labels)
    (grad,) = torch.autograd.grad(2.5 * loss, logits)
    expected = _reference(logits, labels)
    (expected_grad,) = torch.autograd.grad(2.5 * expected, logits)

    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-7)
    assert torch.all(grad[0, 2] == 0) and torch.all(grad[2, 6] == 0)


def test_bf16_logits_get_bf16_gradients_and_fp32_loss():
    logits = torch.randn(2, 4, 9, dtype=torch.bfloat16, requires_grad=True)
    labels = torch.randint(0, 9, (2, 4))
    loss = cross_entropy_loss(logits, labels)
    loss.backward()
    assert loss.dtype == torch.float32 and logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, _reference(logits.detach(), labels))


def test_second_backward_is_refused():
    logits = torch.randn(5, 3, requires_grad=True)
    loss = FusedCrossEntropy.apply(logits, torch.tensor([0, 1, 2, 0, 1]), -100)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="single backward"):
        loss.backward()


def test_without_grad_it_is_plain_cross_entropy():
    logits = torch.randn(2, 3, 4)
    labels = torch.randint(0, 4, (2, 3))
    with torch.no_grad():
        assert torch.equal(build_cross_entropy_loss()(logits, labels), _reference(logits, labels))


@pytest.mark.parametrize("chunk_elements", [2**21, 64])
def test_logits_from_an_operation_get_their_gradient_written_in_place(monkeypatch, chunk_elements):
    monkeypatch.setattr(loss_module, "_CHUNK_ELEMENTS", chunk_elements)
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 7, 5, generator=generator, requires_grad=True)
    weight = torch.randn(11, 5, generator=generator, requires_grad=True)
    labels = torch.randint(0, 11, (3, 7), generator=generator)
    labels[1, 3] = -100

    expected = _reference(hidden @ weight.t(), labels)
    expected_grads = torch.autograd.grad(2.5 * expected, (hidden, weight))
    logits = hidden @ weight.t()
    loss = cross_entropy_loss(logits, labels)
    logits_grad = torch.autograd.grad(2.5 * loss, logits, retain_graph=True)[0]
    storage = logits.untyped_storage().data_ptr()
    assert logits_grad.untyped_storage().data_ptr() == storage  # written over the logits

    logits = hidden @ weight.t()
    loss = cross_entropy_loss(logits, labels)
    grads = torch.autograd.grad(2.5 * loss, (hidden, weight))
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)


def test_an_operation_that_saved_the_logits_fails_loudly():
    weight = torch.randn(11, 5, requires_grad=True)
    logits = torch.randn(2, 3, 5) @ weight.t()
    saved = logits.exp()  # exp's backward needs its output, which stays intact...
    squared = logits.pow(2)  # ...pow's backward needs the logits, which the loss overwrites
    loss = cross_entropy_loss(logits, torch.randint(0, 11, (2, 3)))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (loss + saved.sum() + squared.sum()).backward()


def test_leaf_logits_and_their_views_are_left_intact():
    logits = torch.randn(3, 4, 9, requires_grad=True)
    before = logits.detach().clone()
    cross_entropy_loss(logits, torch.randint(0, 9, (3, 4))).backward()
    assert torch.equal(logits.detach(), before)


@pytest.mark.parametrize("in_place", [True, False])
def test_huge_logit_gaps_give_exact_losses(in_place):
    """Label probabilities far below float32's range: the loss stays exact (no underflow)."""
    logits = torch.zeros(2, 3, 50)
    logits[..., 7] = 300.0  # every other probability is about exp(-300)
    labels = torch.tensor([[0, 7, 1], [7, 2, 49]])
    expected = F.cross_entropy(logits.flatten(0, 1).double(), labels.flatten())
    if in_place:
        weight = torch.eye(50, requires_grad=True)
        logits = logits @ weight  # an operation's output: the loss writes over it
    else:
        logits.requires_grad_()
    loss = cross_entropy_loss(logits, labels)
    loss.backward()
    assert abs(loss.item() - expected.item()) < 1e-4 * expected.item()
    assert torch.isfinite(loss)


def test_compiled_loss_keeps_the_fused_loss_for_cpu_logits(monkeypatch):
    compiled_calls = []

    def fake_compile(fn):
        return lambda *args: compiled_calls.append(args) or fn(*args)

    monkeypatch.setattr(torch, "compile", fake_compile)
    config = JobConfig.from_dict({"compile": {"enable": True, "components": ["model", "loss"]}})
    loss_fn = build_cross_entropy_loss(config)
    weight = torch.randn(9, 9, requires_grad=True)
    logits = torch.randn(2, 4, 9) @ weight
    labels = torch.randint(0, 9, (2, 4))
    expected = _reference(logits.detach(), labels)
    loss = loss_fn(logits, labels)
    assert loss.grad_fn.name() == "FusedCrossEntropyBackward" and compiled_calls == []
    torch.testing.assert_close(loss, expected)


def test_vocab_parallel_loss_matches_cross_entropy_on_two_ranks():
    """Logits sharded over the vocabulary on 2 gloo ranks: loss and gradient shards exact."""
    script = Path(__file__).with_name("loss_parallel_check.py")
    completed = subprocess.run(
        [*torchrun_args(2), str(script)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]


class _Head(torch.nn.Module):
    """A model's last part as the fused output loss sees it: ``output`` and an optional
    ``output_transform``; ``embed`` shares the output weight when ``tied``."""

    def __init__(self, dim: int, vocab: int, softcap: float | None, tied: bool) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, dim)
        self.output = torch.nn.Linear(dim, vocab, bias=False)
        if tied:
            self.output.weight = self.embed.weight
        if softcap is not None:
            self.output_transform = lambda logits: torch.tanh(logits / softcap) * softcap


@pytest.mark.parametrize(
    ("softcap", "tied", "chunk_elements", "piece_elements"),
    [
        (None, False, 2**24, 2**21),
        (None, False, 2**24, 26),
        (None, True, 40, 2**21),
        (None, False, 70, 26),
        (3.0, False, 40, 2**21),
        (3.0, True, 2**24, 26),
    ],
)
def test_fused_output_loss_matches_projection_then_cross_entropy(
    monkeypatch, softcap, tied, chunk_elements, piece_elements
):
    """Loss and gradients of the hidden states and of the output (or tied embedding) weight
    equal the unfused projection + transform + F.cross_entropy, with a ragged last chunk and
    (``piece_elements``: rows the softmax takes at a time) ragged pieces inside chunks."""
    monkeypatch.setattr(loss_module, "_CPU_OUTPUT_CHUNK_ELEMENTS", chunk_elements)
    monkeypatch.setattr(loss_module, "_CHUNK_ELEMENTS", piece_elements)
    torch.manual_seed(0)
    head = _Head(dim=8, vocab=13, softcap=softcap, tied=tied)
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 7, 8, generator=generator, requires_grad=True)
    labels = torch.randint(0, 13, (3, 7), generator=generator)
    labels[1, 3] = -100

    loss = fused_output_cross_entropy_loss(head, hidden * 1.0, labels)
    grads = torch.autograd.grad(2.5 * loss, [hidden, head.output.weight])
    logits = head.output(hidden)
    if softcap is not None:
        logits = head.output_transform(logits)
    expected = _reference(logits, labels)
    expected_grads = torch.autograd.grad(2.5 * expected, [hidden, head.output.weight])

    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-7)

"""The fused cross entropy against F.cross_entropy: loss, gradient, ignored labels, chunking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from runtime.components import loss as loss_module
from runtime.components.loss import FusedCrossEntropy, build_cross_entropy_loss, cross_entropy_loss


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

"""Run by torchrun with 2 ranks: the vocabulary-parallel losses against ``F.cross_entropy``.

Logits are sharded over the vocabulary with DTensor (``Shard(-1)``, an uneven split: 11
columns as 6 + 5), as a column-parallel output projection leaves them. The loss and the
gradient of every shard must equal the unsharded reference, with ignored labels, labels in
either shard, several chunks per shard and both the in-place and the fresh-buffer paths.

The fused output loss gets the output projection's weight sharded by rows (13 as 7 + 6) and
sequence-sharded hidden states, as the tensor-parallel plan leaves them; its loss and the
gradients of the hidden states and of the weight must equal the unsharded ones, with and
without a softcap transform.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Shard, distribute_tensor
from torch.distributed.tensor.parallel import ColwiseParallel, parallelize_module

from runtime.components import loss as loss_module
from runtime.components.loss import cross_entropy_loss, fused_output_cross_entropy_loss
from runtime.distributed.utils import exit_process


def check(mesh, chunk_elements: int, from_operation: bool) -> None:
    loss_module._CHUNK_ELEMENTS = chunk_elements
    generator = torch.Generator().manual_seed(0)
    full = (6 * torch.randn(3, 7, 11, generator=generator)).requires_grad_()
    labels = torch.randint(0, 11, (3, 7), generator=generator)
    labels[0, 2] = labels[2, 6] = -100
    labels[1, 0], labels[1, 1] = 0, 10  # one label in each shard's outermost column

    expected = F.cross_entropy(full.flatten(0, 1), labels.flatten(), ignore_index=-100)
    (expected_grad,) = torch.autograd.grad(2.5 * expected, full)

    leaf = distribute_tensor(full.detach(), mesh, [Shard(2)]).requires_grad_()
    logits = leaf * 1.0 if from_operation else leaf
    loss = cross_entropy_loss(logits, labels)
    (2.5 * loss).backward()
    assert isinstance(leaf.grad, DTensor) and leaf.grad.placements == (Shard(2),)
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(leaf.grad.full_tensor(), expected_grad, rtol=1e-5, atol=1e-7)


class Head(nn.Module):
    def __init__(self, softcap: float | None) -> None:
        super().__init__()
        self.output = nn.Linear(8, 13, bias=False)
        if softcap is not None:
            self.output_transform = lambda logits: torch.tanh(logits / softcap) * softcap


def check_fused_output(mesh, chunk_elements: int, softcap: float | None) -> None:
    loss_module._CPU_OUTPUT_CHUNK_ELEMENTS = chunk_elements
    torch.manual_seed(0)
    reference = Head(softcap)
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(2, 6, 8, generator=generator, requires_grad=True)
    labels = torch.randint(0, 13, (2, 6), generator=generator)
    labels[0, 1], labels[0, 2], labels[1, 5] = -100, 0, 12
    logits = reference.output(hidden)
    if softcap is not None:
        logits = reference.output_transform(logits)
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    expected_grads = torch.autograd.grad(2.5 * expected, [hidden, reference.output.weight])

    head = Head(softcap)
    head.load_state_dict(reference.state_dict())
    plan = ColwiseParallel(input_layouts=Shard(1), output_layouts=Shard(-1), use_local_output=False)
    parallelize_module(head, mesh, {"output": plan})
    sharded = distribute_tensor(hidden.detach(), mesh, [Shard(1)]).requires_grad_()
    loss = fused_output_cross_entropy_loss(head, sharded * 1.0, labels)
    (2.5 * loss).backward()
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    assert sharded.grad.placements == (Shard(1),)
    for grad, expected_grad in zip(
        (sharded.grad, head.output.weight.grad), expected_grads, strict=True
    ):
        torch.testing.assert_close(grad.full_tensor(), expected_grad, rtol=1e-5, atol=1e-7)


def main() -> None:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("tp",))
    for chunk_elements in (2**21, 16):
        for from_operation in (True, False):
            check(mesh, chunk_elements, from_operation)
    for chunk_elements, softcap in ((2**24, None), (20, 3.0)):
        check_fused_output(mesh, chunk_elements, softcap)


if __name__ == "__main__":
    main()
    exit_process(0)  # destroys the process group; skips a teardown gloo can abort in

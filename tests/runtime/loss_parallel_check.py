"""Run by torchrun with 2 ranks: the vocabulary-parallel loss against ``F.cross_entropy``.

Logits are sharded over the vocabulary with DTensor (``Shard(-1)``, an uneven split: 11
columns as 6 + 5), as a column-parallel output projection leaves them. The loss and the
gradient of every shard must equal the unsharded reference, with ignored labels, labels in
either shard, several chunks per shard and both the in-place and the fresh-buffer paths.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import DTensor, Shard, distribute_tensor

from runtime.components import loss as loss_module
from runtime.components.loss import cross_entropy_loss


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


def main() -> None:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (2,), mesh_dim_names=("tp",))
    for chunk_elements in (2**21, 16):
        for from_operation in (True, False):
            check(mesh, chunk_elements, from_operation)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

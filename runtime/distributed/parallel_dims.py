"""Parallel degrees, their validation, and the DeviceMesh built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from runtime.config import ConfigError

# Mesh dimensions, outermost first: pipeline stages talk least, tensor parallel ranks most.
MESH_DIM_ORDER = ("pp", "dp_replicate", "dp_shard", "tp")


@dataclass
class ParallelDims:
    """The parallel degrees of one job.

    ``dp_shard = -1`` takes whatever the other degrees leave of ``world_size``. Validation
    happens on construction; every failure is a ``ConfigError`` with a one-line message.
    """

    dp_replicate: int
    dp_shard: int
    tp: int
    pp: int
    world_size: int
    ep: int = 1
    world_mesh: DeviceMesh | None = field(default=None, init=False, repr=False)
    _flat_dp_mesh: DeviceMesh | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._validate()

    @classmethod
    def from_config(cls, parallelism: Any, world_size: int) -> ParallelDims:
        """Build from the ``[parallelism]`` config section."""
        return cls(
            dp_replicate=parallelism.data_parallel_replicate_degree,
            dp_shard=parallelism.data_parallel_shard_degree,
            tp=parallelism.tensor_parallel_degree,
            pp=parallelism.pipeline_parallel_degree,
            world_size=world_size,
            ep=parallelism.expert_parallel_degree,
        )

    def _validate(self) -> None:
        names = {
            "data_parallel_replicate_degree": self.dp_replicate,
            "tensor_parallel_degree": self.tp,
            "pipeline_parallel_degree": self.pp,
        }
        for name, value in names.items():
            if value < 1:
                raise ConfigError(f"parallelism.{name} must be >= 1, got {value}")
        if self.dp_shard == 0 or self.dp_shard < -1:
            raise ConfigError(
                f"parallelism.data_parallel_shard_degree must be -1 or >= 1, got {self.dp_shard}"
            )
        others = self.dp_replicate * self.tp * self.pp
        if self.dp_shard == -1:
            if self.world_size % others:
                raise ConfigError(
                    f"world size {self.world_size} is not divisible by dp_replicate "
                    f"{self.dp_replicate} x tp {self.tp} x pp {self.pp} = {others}"
                )
            self.dp_shard = self.world_size // others
        product = others * self.dp_shard
        if product != self.world_size:
            raise ConfigError(
                f"parallel degrees dp_replicate {self.dp_replicate} x dp_shard {self.dp_shard} x "
                f"tp {self.tp} x pp {self.pp} = {product} must equal the world size "
                f"{self.world_size}"
            )
        if self.ep < 1:
            raise ConfigError(f"parallelism.expert_parallel_degree must be >= 1, got {self.ep}")
        if self.ep > 1 and self.dp_shard % self.ep:
            raise ConfigError(
                f"parallelism.expert_parallel_degree {self.ep} must divide the data-parallel "
                f"shard degree {self.dp_shard} (expert-parallel ranks are taken out of it)"
            )
        if self.ep > 1 and self.dp_replicate > 1:
            raise ConfigError(
                "parallelism.expert_parallel_degree > 1 with data_parallel_replicate_degree > 1 "
                "(HSDP) is not supported; shard over all data-parallel ranks instead"
            )

    def check_experts(self, num_experts: int | None) -> None:
        """Check that the experts split evenly over the expert-parallel ranks."""
        if self.ep == 1:
            return
        if num_experts is None:
            raise ConfigError(
                f"parallelism.expert_parallel_degree {self.ep} needs a model with experts; "
                "this one has none, set it to 1"
            )
        if num_experts % self.ep:
            raise ConfigError(
                f"parallelism.expert_parallel_degree {self.ep} must divide the number of "
                f"experts {num_experts}"
            )

    def check_model(self, n_layers: int, n_heads: int, n_kv_heads: int | None = None) -> None:
        """Check that the model splits evenly: heads and kv heads by tp, layers over stages."""
        kv_heads = n_kv_heads or n_heads
        if n_heads % self.tp:
            raise ConfigError(
                f"tensor_parallel_degree {self.tp} must divide the number of heads {n_heads}"
            )
        if kv_heads % self.tp:
            raise ConfigError(
                f"tensor_parallel_degree {self.tp} must divide the number of kv heads {kv_heads}"
            )
        if self.pp > n_layers:
            raise ConfigError(
                f"pipeline_parallel_degree {self.pp} exceeds the number of layers {n_layers}"
            )

    def build_mesh(self, device_type: str) -> DeviceMesh:
        """Create the world DeviceMesh and its flattened data-parallel views.

        Dimensions of size 1 are left out, except ``dp_shard`` which is kept whenever
        ``dp_replicate`` is used (FSDP2 then runs HSDP on the 2-D mesh). The flattened ``"dp"``
        dimension (replicate x shard) serves data loading and loss averaging.
        """
        sizes = {"pp": self.pp, "dp_replicate": self.dp_replicate, "dp_shard": self.dp_shard}
        sizes["tp"] = self.tp
        names = [name for name in MESH_DIM_ORDER if sizes[name] > 1]
        if self.dp_replicate > 1 and "dp_shard" not in names:
            names.insert(names.index("dp_replicate") + 1, "dp_shard")
        if not names:
            names = ["dp_shard"]
        if self.ep_enabled:
            # Expert-parallel ranks are taken out of the shard ranks: (shard / ep, ep), flattened
            # back to "dp_shard" for everything but the experts.
            index = names.index("dp_shard")
            names[index : index + 1] = ["dp_shard_mod_ep", "ep"]
            sizes.update(dp_shard_mod_ep=self.dp_shard // self.ep, ep=self.ep)
        mesh = init_device_mesh(
            device_type, tuple(sizes[name] for name in names), mesh_dim_names=tuple(names)
        )
        if self.ep_enabled:
            mesh["dp_shard_mod_ep", "ep"]._flatten("dp_shard")
        shard_names = ("dp_shard_mod_ep", "ep") if self.ep_enabled else ("dp_shard",)
        dp_names = tuple(name for name in ("dp_replicate", *shard_names) if name in names)
        self._flat_dp_mesh = mesh[dp_names]._flatten("dp") if dp_names else None
        self.world_mesh = mesh
        return mesh

    def _require_mesh(self) -> DeviceMesh:
        if self.world_mesh is None:
            raise RuntimeError("call ParallelDims.build_mesh(device_type) first")
        return self.world_mesh

    def _submesh(self, name: str) -> DeviceMesh | None:
        mesh = self._require_mesh()
        return mesh[name] if name in (mesh.mesh_dim_names or ()) else None

    @property
    def dp_mesh(self) -> DeviceMesh | None:
        """The flattened data-parallel mesh (for data loading), None without data parallelism."""
        self._require_mesh()
        return self._flat_dp_mesh if self.dp_enabled else None

    @property
    def fsdp_mesh(self) -> DeviceMesh | None:
        """The mesh to pass to ``apply_fsdp``: 2-D (replicate, shard) for HSDP, else 1-D."""
        mesh = self._require_mesh()
        if not self.fsdp_enabled:
            return None
        if self.dp_replicate_enabled:
            return mesh["dp_replicate", "dp_shard"]
        return mesh["dp_shard"]

    @property
    def ep_mesh(self) -> DeviceMesh | None:
        """The expert-parallel mesh (part of the shard ranks), None when ep is 1."""
        return self._require_mesh()["ep"] if self.ep_enabled else None

    @property
    def expert_fsdp_mesh(self) -> DeviceMesh | None:
        """The mesh FSDP shards expert-parallel experts over: the shard ranks of one expert."""
        return self._require_mesh()["dp_shard_mod_ep"] if self.ep_enabled else None

    @property
    def ep_enabled(self) -> bool:
        """Whether experts are split over ranks."""
        return self.ep > 1

    @property
    def tp_mesh(self) -> DeviceMesh | None:
        """The tensor-parallel mesh, None when tp is 1."""
        return self._submesh("tp") if self.tp_enabled else None

    @property
    def pp_mesh(self) -> DeviceMesh | None:
        """The pipeline mesh, None when pp is 1."""
        return self._submesh("pp") if self.pp_enabled else None

    @property
    def dp_degree(self) -> int:
        """Number of data-parallel replicas of the model (replicate x shard)."""
        return self.dp_replicate * self.dp_shard

    @property
    def dp_rank(self) -> int:
        """This rank's index among the data-parallel replicas."""
        mesh = self.dp_mesh
        return mesh.get_local_rank() if mesh is not None else 0

    @property
    def dp_enabled(self) -> bool:
        """Whether there is more than one data-parallel replica."""
        return self.dp_degree > 1

    @property
    def dp_replicate_enabled(self) -> bool:
        """Whether the replicate (HSDP outer) degree is above 1."""
        return self.dp_replicate > 1

    @property
    def dp_shard_enabled(self) -> bool:
        """Whether parameters are sharded over more than one rank."""
        return self.dp_shard > 1

    @property
    def fsdp_enabled(self) -> bool:
        """Whether FSDP2 is applied (sharding, or HSDP replication, over more than one rank)."""
        return self.dp_enabled

    @property
    def tp_enabled(self) -> bool:
        """Whether tensor parallelism is used."""
        return self.tp > 1

    @property
    def pp_enabled(self) -> bool:
        """Whether pipeline parallelism is used."""
        return self.pp > 1

    @property
    def non_data_parallel_size(self) -> int:
        """Ranks that see the same data: tp x pp."""
        return self.tp * self.pp

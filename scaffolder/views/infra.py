"""The package's ``infra/`` and ``__init__.py``: tensor-parallel plan, pipeline, flavors.

The tensor-parallel plan is a list of (module, parallel style) entries that follows the model's
modules: a norm the model does not have gets no entry, a gate projection only where the MLP is
gated. Styles come from a fixed set of expressions over torch's parallel styles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scaffolder.spec import ArchSpec

SEQUENCE_PARALLEL = "SequenceParallel()"
COLWISE = "ColwiseParallel()"
ROWWISE_TO_SEQUENCE = "RowwiseParallel(output_layouts=Shard(1))"
SEQUENCE_TO_REPLICATE = (
    "PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),))"
)


@dataclass(frozen=True)
class PlanEntry:
    """``module: style`` in a ``parallelize_module`` plan; ``comment`` explains it (prose)."""

    module: str
    style: str
    comment: str = ""


@dataclass(frozen=True)
class InfraView:
    model_plan: tuple[PlanEntry, ...]
    block_plan: tuple[PlanEntry, ...]
    sharded_feature_norm: bool  # the ShardedFeatureNorm style is defined and used
    column_modules: str  # the docstring's "q/k/v and ..." list of column-wise projections
    has_pipeline: bool  # infra/pipeline.py exists (tied embeddings cannot be split in stages)
    input_modules: tuple[str, ...]  # modules the first pipeline stage runs before the blocks
    debug_args: tuple[tuple[str, Any, str], ...]  # (ModelArgs field, value, comment)
    full_args: tuple[tuple[str, Any], ...]

    has_experts: bool = False  # model/moe.py exists (mixture-of-experts layers)
    ep_doc: str = ""  # apply_ep's docstring
    # Blocks with experts and blocks with a dense MLP: their plans, added per block.
    moe_plan: tuple[PlanEntry, ...] = ()
    dense_plan: tuple[PlanEntry, ...] = ()

    @property
    def omitted_files(self) -> tuple[str, ...]:
        """Template files this package does not have."""
        omitted = () if self.has_pipeline else ("infra/pipeline.py",)
        return omitted + (() if self.has_experts else ("model/moe.py",))


def _model_plan(spec: ArchSpec) -> tuple[PlanEntry, ...]:
    entries = [
        PlanEntry(
            "tok_embeddings", "RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1))"
        )
    ]
    if spec.features.learned_positions:
        entries.append(
            PlanEntry(
                "pos_embeddings",
                "RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(0))",
                "Position rows split like the vocabulary; the output, [seq, dim], is sharded by "
                "sequence to add to the sequence-sharded token embeddings.",
            )
        )
    entries += [
        PlanEntry("norm", SEQUENCE_PARALLEL),
        PlanEntry(
            "output",
            "ColwiseParallel(input_layouts=Shard(1), output_layouts=Shard(-1), "
            "use_local_output=False)",
        ),
    ]
    return tuple(entries)


def _block_plan(spec: ArchSpec) -> tuple[PlanEntry, ...]:
    f = spec.features
    placement = f.norm.placement
    entries: list[PlanEntry] = []
    if placement != "post":
        entries.append(PlanEntry("attention_norm", SEQUENCE_PARALLEL))
    if spec.rope is None:
        entries.append(PlanEntry("attention", SEQUENCE_TO_REPLICATE))
    else:
        entries.append(
            PlanEntry(
                "attention",
                "PrepareModuleInput(input_layouts=(Shard(1), None), "
                "desired_input_layouts=(Replicate(), None))",
            )
        )
    entries += [PlanEntry(f"attention.{name}", COLWISE) for name in ("wq", "wk", "wv")]
    if f.qk_norm is not None and f.qk_norm.kind == "per_head":
        per_head = "SequenceParallel(sequence_dim=1, use_local_output=True)"
        entries += [
            PlanEntry(
                "attention.q_norm",
                per_head,
                "q/k norms see this rank's heads, [batch, heads, seq, head_dim]: their weights "
                "are replicated and their gradients summed over the ranks.",
            ),
            PlanEntry("attention.k_norm", per_head),
        ]
    elif f.qk_norm is not None:
        entries += [
            PlanEntry(
                "attention.q_norm",
                "ShardedFeatureNorm()",
                "q/k norms span whole projections, whose features wq / wk split over ranks.",
            ),
            PlanEntry("attention.k_norm", "ShardedFeatureNorm()"),
        ]
    entries.append(PlanEntry("attention.wo", ROWWISE_TO_SEQUENCE))
    post_norms = placement in ("post", "sandwich")
    if post_norms:
        entries.append(
            PlanEntry(
                "post_attention_norm",
                "SequenceParallel(use_local_output=True)",
                "Sublayer outputs leave wo / w2 as sequence shards; their norms run there and "
                "hand plain tensors to the residual add.",
            )
        )
    if placement != "post":
        entries.append(PlanEntry("ffn_norm", SEQUENCE_PARALLEL))
    moe = f.moe
    if moe is None:
        entries += _dense_plan(spec)
    elif not moe.has_dense_layers(spec.n_layers):
        entries += _moe_plan()
    if post_norms:
        entries.append(PlanEntry("post_ffn_norm", "SequenceParallel(use_local_output=True)"))
    return tuple(entries)


def _ep_doc(spec: ArchSpec) -> str:
    moe = spec.features.moe
    if moe is None:
        return ""
    return (
        "Expert parallelism: each MoE layer's experts split over the EP ranks.\n\n"
        f"The EP degree must divide the {moe.num_experts} experts ({moe.experts_field}); each "
        "rank keeps a contiguous block of them, and tokens travel to their experts and back by "
        "all-to-all. FSDP then shards each block of experts over the ranks holding the same "
        "experts."
    )


def _dense_plan(spec: ArchSpec) -> list[PlanEntry]:
    entries = [
        PlanEntry("feed_forward", SEQUENCE_TO_REPLICATE),
        PlanEntry("feed_forward.w1", COLWISE),
        PlanEntry("feed_forward.w2", ROWWISE_TO_SEQUENCE),
    ]
    if spec.features.gated_mlp:
        entries.append(PlanEntry("feed_forward.w3", COLWISE))
    return entries


def _moe_plan() -> list[PlanEntry]:
    return [
        PlanEntry(
            "moe",
            "PrepareModuleInputOutput(input_layouts=(Shard(1),), "
            "desired_input_layouts=(Replicate(),), use_local_input=True, "
            "output_layouts=(Replicate(),), desired_output_layouts=(Shard(1),))",
            "The experts see the whole sequence and run replicated on every TP rank (same "
            "tokens, same weights, same gradients); expert parallelism is what splits them.",
        )
    ]


def _debug_args(spec: ArchSpec) -> tuple[tuple[str, Any, str], ...]:
    derived = spec.features.names.derived_head_dims
    args = []
    for name, value in spec.debug_dims().items():
        if derived and name in ("n_kv_heads", "head_dim"):
            continue  # ModelArgs derives them from dim and n_heads
        comment = ""
        if name == "attention_dropout":
            comment = f"config.json: {spec.features.attention_dropout}"
        args.append((name, value, comment))
    return tuple(args)


def _full_args(spec: ArchSpec) -> tuple[tuple[str, Any], ...]:
    names = ["vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ffn_dim"]
    if spec.features.names.derived_head_dims:
        names.remove("n_kv_heads")
        names.remove("head_dim")
    return tuple((name, getattr(spec, name)) for name in [*names, "max_seq_len"])


def infra_view(spec: ArchSpec) -> InfraView:
    moe = spec.features.moe
    mixed = moe is not None and moe.has_dense_layers(spec.n_layers)
    return InfraView(
        model_plan=_model_plan(spec),
        block_plan=_block_plan(spec),
        sharded_feature_norm=spec.features.qk_norm is not None
        and spec.features.qk_norm.kind == "projection",
        column_modules="q/k/v and w1/w3" if spec.features.gated_mlp else "q/k/v and w1",
        has_pipeline=not spec.tie_word_embeddings,
        input_modules=("tok_embeddings", "pos_embeddings")
        if spec.features.learned_positions
        else (),
        debug_args=_debug_args(spec),
        full_args=_full_args(spec),
        has_experts=spec.features.moe is not None,
        ep_doc=_ep_doc(spec),
        moe_plan=tuple(_moe_plan()) if mixed else (),
        dense_plan=tuple(_dense_plan(spec)) if mixed else (),
    )

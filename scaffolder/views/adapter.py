"""The package's ``model/state_dict_adapter.py`` and its test: key tables and docstring bullets.

Everything follows from the recipe's :class:`~scaffolder.features.CheckpointLayout` (the
checkpoint's key names, fused and transposed tensors) and from the modules the model has (norm
placement, biases, q/k norms, gated MLP, learned positions, tied embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass

from scaffolder.errors import ScaffoldError
from scaffolder.features import CheckpointLayout
from scaffolder.spec import ArchSpec


@dataclass(frozen=True)
class Fused:
    """A checkpoint tensor that holds several of the model's tensors (``{}``: the layer)."""

    theirs: str
    ours: tuple[str, ...]  # in the order the checkpoint stacks them
    sizes: str  # a tuple expression of the stacked output features (stacked layouts only)


@dataclass(frozen=True)
class AdapterView:
    bullets: tuple[str, ...]  # the module docstring's list (prose)
    exactness: str  # the class docstring's sentence on bit-identical round trips
    from_hf: tuple[tuple[str, str], ...]  # (transformers key, our key); "{}": the layer
    fused: tuple[Fused, ...]
    per_head: bool  # fused q/k/v head after head (else stacked in order)
    split_parts: str  # from_hf's expression: the parts of a fused ``value`` (its ``template``)
    fuse_parts: str  # to_hf's expression: the fused tensor of ``parts`` ({place: tensor})
    size_locals: tuple[tuple[str, str], ...]  # (name, expression) the split sizes use
    conv1d: tuple[str, ...]  # keys of weights stored transposed
    buffers: tuple[str, ...]  # keys from_hf skips
    legacy_names: tuple[tuple[str, str], ...]  # (other key, checkpoint key)
    hub_prefix: str | None  # the prefix some checkpoints leave out ("transformer.")
    kept_prefixes: tuple[str, ...]  # key prefixes that are whole without it
    embedding_key: str  # the checkpoint's token embedding key
    lm_head_key: str  # and its output projection's
    older_key: str  # the test's expression: a current key as older checkpoints write it
    older_buffers: tuple[str, ...]  # the test's buffer keys, as older checkpoints write them
    older_doc: str  # the test's docstring
    # Per-expert checkpoint tensors: (transformers key with "{}" for layer and expert, our
    # stacked key), and our expert-bias buffer's key (not in transformers' checkpoints).
    experts: tuple[tuple[str, str], ...] = ()
    expert_bias: str = ""
    router_key: str = ""  # transformers': a sparse layer's router (from_hf adds our expert bias)
    extra_layers: bool = False  # from_hf skips layers past n_layers (multi-token prediction)
    selection_bias: str = ""  # the checkpoint's name of our expert_bias ("": not in it)
    # Keys stored with their last two dimensions swapped (stacked experts), and whether the
    # fused tensors interleave gate and up column by column (split_gate_up / fuse_gate_up).
    transposed: tuple[str, ...] = ()
    interleaved: bool = False
    # Keys the hub's files may hold as MXFP4 "<key>_blocks" / "<key>_scales", transposed.
    mxfp4: tuple[str, ...] = ()
    # Endings of checkpoint keys exported in float32 whatever the export dtype.
    float32: tuple[str, ...] = ()

    @property
    def reads_template(self) -> bool:
        """``from_hf`` looks up a key's layer template before renaming it."""
        return bool(
            self.fused or self.conv1d or self.buffers or self.expert_bias or self.transposed
        )

    @property
    def reads_older(self) -> bool:
        """Some checkpoints differ from what ``to_hf`` writes (the test reads one)."""
        return bool(self.buffers or self.legacy_names or self.hub_prefix)


def _code(name: str) -> str:
    return f"``{name}``"


def _and(items: list[str]) -> str:
    """``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _block_norms(spec: ArchSpec) -> list[tuple[str, str]]:
    """(checkpoint name, our name) of the norms after the attention, in block order."""
    c = spec.features.checkpoint
    placement = spec.features.norm.placement
    if placement == "pre":
        return [(c.post_attention_norm, "ffn_norm")]
    if placement == "post":
        return [(c.post_attention_norm, "post_attention_norm"), (c.post_mlp_norm, "post_ffn_norm")]
    return [
        (c.post_attention_norm, "post_attention_norm"),
        (c.pre_mlp_norm, "ffn_norm"),
        (c.post_mlp_norm, "post_ffn_norm"),
    ]


def _mlp(spec: ArchSpec) -> list[tuple[str, str]]:
    """(checkpoint name, our name) of the MLP projections."""
    c = spec.features.checkpoint
    if spec.features.gated_mlp:
        return [(c.gate, "w1"), (c.up, "w3"), (c.down, "w2")]
    return [(c.up, "w1"), (c.down, "w2")]


def _from_hf(spec: ArchSpec, qkv_bias: bool) -> list[tuple[str, str]]:
    f = spec.features
    c = f.checkpoint
    top = f"{c.prefix}."
    block = f"{c.prefix}.{c.blocks}.{{}}."
    norm_bias = f.norm.kind == "layernorm"
    entries = [(f"{top}{c.embedding}.weight", "tok_embeddings.weight")]
    if f.learned_positions:
        if c.positions is None:
            raise ScaffoldError("learned positions need CheckpointLayout.positions")
        entries.append((f"{top}{c.positions}.weight", "pos_embeddings.weight"))

    def norm(theirs: str, ours: str) -> None:
        entries.append((f"{theirs}.weight", f"{ours}.weight"))
        if norm_bias:
            entries.append((f"{theirs}.bias", f"{ours}.bias"))

    def projections(modules: list[tuple[str, str, bool]]) -> None:
        """Weights, then the biases of those that have one."""
        entries.extend((f"{theirs}.weight", f"{ours}.weight") for theirs, ours, _ in modules)
        entries.extend((f"{theirs}.bias", f"{ours}.bias") for theirs, ours, bias in modules if bias)

    attention = f"{block}{c.attention}."
    if f.norm.placement != "post":
        norm(f"{block}{c.input_norm}", "layers.{}.attention_norm")
    qkv = [(c.q_proj, "wq"), (c.k_proj, "wk"), (c.v_proj, "wv")] if c.fused_qkv is None else []
    if f.latent_attention is not None:
        qkv = _latent_projections(spec)
    projections(
        [(attention + theirs, f"layers.{{}}.attention.{ours}", qkv_bias) for theirs, ours in qkv]
        + [(attention + c.o_proj, "layers.{}.attention.wo", spec.attention_bias)]
    )
    if f.latent_attention is not None:
        for theirs, ours in _latent_norms(spec):
            entries.append((f"{attention}{theirs}.weight", f"layers.{{}}.attention.{ours}.weight"))
    if f.qk_norm is not None:
        for name in ("q_norm", "k_norm"):
            entries.append((f"{attention}{name}.weight", f"layers.{{}}.attention.{name}.weight"))
    if f.attention_sinks:
        entries.append((f"{attention}sinks", "layers.{}.attention.sinks"))
    for theirs, ours in _block_norms(spec):
        norm(block + theirs, f"layers.{{}}.{ours}")
    moe = f.moe
    if moe is None or moe.has_dense_layers(spec.n_layers):
        mlp = _mlp(spec) if c.fused_gate_up is None else [(c.down, "w2")]
        projections(
            [
                (f"{block}{c.mlp}.{theirs}", f"layers.{{}}.feed_forward.{ours}", spec.mlp_bias)
                for theirs, ours in mlp
            ]
        )
    if moe is not None:
        ml = moe.layout
        sparse = f"{block}{ml.module}."
        entries.append((f"{sparse}{ml.router}.weight", "layers.{}.moe.router.gate.weight"))
        bias_name = moe.group_routing.bias_name if moe.group_routing is not None else None
        if bias_name is not None:  # the selection bias is the checkpoint's own buffer
            entries.append((f"{sparse}{ml.router}.{bias_name}", "layers.{}.moe.expert_bias"))
        if moe.router_bias:
            entries.append((f"{sparse}{ml.router}.bias", "layers.{}.moe.router.gate.bias"))
        if ml.interleaved:
            down = f"{sparse}experts.{ml.fused_output}"
            entries.append((down, "layers.{}.moe.experts.w2"))
            if moe.expert_biases:
                entries.append((f"{down}_bias", "layers.{}.moe.experts.b2"))
        elif ml.fused_output is not None:
            entries.append((f"{sparse}{ml.fused_output}.weight", "layers.{}.moe.experts.w2"))
        if moe.shared_ffn_dim is not None:
            entries.extend(
                (
                    f"{sparse}{ml.shared_expert}.{theirs}.weight",
                    f"layers.{{}}.moe.shared_expert.{ours}.weight",
                )
                for theirs, ours in ((ml.gate, "w1"), (ml.up, "w3"), (ml.down, "w2"))
            )
            if ml.shared_gate is not None:
                entries.append(
                    (f"{sparse}{ml.shared_gate}.weight", "layers.{}.moe.shared_expert_gate.weight")
                )
    norm(top + c.final_norm, "norm")
    if not spec.tie_word_embeddings:
        entries.append((f"{c.lm_head}.weight", "output.weight"))
    return entries


def _latent_projections(spec: ArchSpec) -> list[tuple[str, str]]:
    """(checkpoint name, our name) of multi-head latent attention's projections but o_proj."""
    if spec.features.latent_attention.q_lora_rank is None:
        queries = [("q_proj", "wq")]
    else:
        queries = [("q_a_proj", "wq_a"), ("q_b_proj", "wq_b")]
    return [*queries, ("kv_a_proj_with_mqa", "wkv_a"), ("kv_b_proj", "wkv_b")]


def _latent_norms(spec: ArchSpec) -> list[tuple[str, str]]:
    queries = (
        [] if spec.features.latent_attention.q_lora_rank is None else [("q_a_layernorm", "q_norm")]
    )
    return [*queries, ("kv_a_layernorm", "kv_norm")]


def _fused(spec: ArchSpec, qkv_bias: bool) -> tuple[list[Fused], list[tuple[str, str]]]:
    """The fused tensors, and the local variables their split sizes use."""
    c = spec.features.checkpoint
    block = f"{c.prefix}.{c.blocks}.{{}}."
    fused: list[Fused] = []
    size_locals: list[tuple[str, str]] = []
    if c.fused_qkv is not None:
        if spec.features.names.derived_head_dims:  # multi-head: q, k and v are dim wide
            size_locals.append(("dim", "model_args.dim"))
            sizes = "(dim, dim, dim)"
        else:
            size_locals += [
                ("q_dim", "model_args.n_heads * model_args.head_dim"),
                ("kv_dim", "model_args.n_kv_heads * model_args.head_dim"),
            ]
            sizes = "(q_dim, kv_dim, kv_dim)"
        for kind in ("weight", "bias") if qkv_bias else ("weight",):
            fused.append(
                Fused(
                    f"{block}{c.attention}.{c.fused_qkv}.{kind}",
                    tuple(f"layers.{{}}.attention.{ours}.{kind}" for ours in ("wq", "wk", "wv")),
                    sizes,
                )
            )
    moe = spec.features.moe
    if moe is not None and moe.layout.interleaved:
        gate_up = f"{block}{moe.layout.module}.experts.{moe.layout.fused_input}"
        fused.append(Fused(gate_up, ("layers.{}.moe.experts.w1", "layers.{}.moe.experts.w3"), ""))
        if moe.expert_biases:
            fused.append(
                Fused(
                    f"{gate_up}_bias", ("layers.{}.moe.experts.b1", "layers.{}.moe.experts.b3"), ""
                )
            )
    elif moe is not None and moe.layout.fused_input is not None:
        fused.append(
            Fused(
                f"{block}{moe.layout.module}.{moe.layout.fused_input}.weight",
                ("layers.{}.moe.experts.w1", "layers.{}.moe.experts.w3"),
                "",
            )
        )
    if c.fused_gate_up is not None:
        for kind in ("weight", "bias") if spec.mlp_bias else ("weight",):
            fused.append(
                Fused(
                    f"{block}{c.mlp}.{c.fused_gate_up}.{kind}",
                    tuple(f"layers.{{}}.feed_forward.{ours}.{kind}" for ours in ("w1", "w3")),
                    "(model_args.ffn_dim, model_args.ffn_dim)",
                )
            )
    return fused, [] if c.qkv_per_head else size_locals


def _bullets(spec: ArchSpec, embedding_key: str) -> list[str]:
    f = spec.features
    c = f.checkpoint
    bullets = []
    if spec.rope is not None:
        channels = " (the first rotary channels of each head)" if f.partial_rotary else ""
        if c.fused_qkv is None:
            loaded = f"{_code(c.q_proj)} and {_code(c.k_proj)} load"
        else:
            loaded = f"the query and key rows of {_code(c.fused_qkv)} load"
        bullets.append(
            f"Rotary layout: the model rotates q/k{channels} in transformers' half-split layout, "
            f"so {loaded} as they are; no per-head permutation."
        )
    if spec.tie_word_embeddings:
        bullets.append(
            f"Tied embeddings (tie_word_embeddings): transformers' checkpoints store only "
            f"{_code(embedding_key)}; ``output.weight`` is the same tensor."
        )
    else:
        bullets.append(
            f"Untied embeddings: {_code(c.lm_head + '.weight')} and {_code(embedding_key)} are "
            "separate tensors."
        )
    if spec.rope is not None:
        bullets.append(
            "Non-persistent buffers (the rope cache here, ``rotary_emb.inv_freq`` there) are in "
            "neither state dict."
        )
    if c.qkv_per_head:
        bullets.append(
            f"Fused tensors: the checkpoint's {_code(f'{c.attention}.{c.fused_qkv}')} holds, head "
            "after head, that head's query, key and value rows (its output features unflatten to "
            "heads, then q/k/v, then head_dim). The model keeps separate projections, so tensor "
            "parallelism shards each of them whole: ``from_hf`` splits the fused tensors and "
            "``to_hf`` interleaves them again."
        )
    elif c.fused_qkv is not None or c.fused_gate_up is not None:
        stacks = []
        if c.fused_qkv is not None:
            stacks.append(f"q, k and v in {_code(f'{c.attention}.{c.fused_qkv}')}")
        if c.fused_gate_up is not None:
            stacks.append(f"gate and up in {_code(f'{c.mlp}.{c.fused_gate_up}')}")
        bullets.append(
            f"Fused tensors: the checkpoint stacks {' and '.join(stacks)} (along the output "
            "features, in that order). The model keeps separate projections, so tensor "
            "parallelism shards each of them whole: ``from_hf`` splits the fused tensors (into "
            "views) and ``to_hf`` concatenates them again."
        )
    moe = f.moe
    if moe is not None:
        ml = moe.layout
        if ml.interleaved:
            biases = " and their ``_bias`` tensors" if moe.expert_biases else ""
            held = (
                f"each layer's experts stacked as transformers keeps them, "
                f"{_code('experts.' + ml.fused_input)} ``[experts, dim, 2 * ffn]`` (gate and up "
                f"interleaved column by column) and {_code('experts.' + ml.fused_output)} "
                f"``[experts, ffn, dim]``{biases}: the transposes of the model's ``[experts, "
                "out, in]`` weights. ``from_hf`` takes the even and odd columns apart and "
                "transposes, ``to_hf`` interleaves them again"
            )
        elif ml.fused_input is not None:
            held = (
                f"each layer's experts fused, {_code(ml.fused_input)} ``[experts, 2 * ffn, dim]`` "
                f"(gate rows, then up rows, per expert) and {_code(ml.fused_output)}; "
                "``from_hf`` splits the first into ``w1`` and ``w3`` and ``to_hf`` concatenates "
                "them again"
            )
        else:
            names = ", ".join(_code(f"experts.<j>.{name}") for name in (ml.gate, ml.up, ml.down))
            held = (
                f"one tensor per expert ({names}), as the hub's files and ``save_pretrained`` "
                "store them (transformers stacks them only in memory); ``from_hf`` stacks them "
                "into the model's ``[experts, ...]`` weights and ``to_hf`` splits them again"
            )
        bullets.append(f"Experts: the checkpoint holds {held}.")
        if ml.mxfp4:
            bullets.append(
                "MXFP4: the hub's files store those expert weights quantized, as "
                "``<name>_blocks`` (two FP4 E2M1 values a byte) and ``<name>_scales`` (an E8M0 "
                "exponent per 32 values) of their transpose ``[experts, out, in]``; ``from_hf`` "
                "dequantizes them to float32 (``runtime.mxfp4``) and ``to_hf`` writes them "
                "unquantized, as ``save_pretrained`` does; ``mxfp4_sources`` names them, so "
                "that a rank of the sharded import dequantizes only the rows and experts it "
                "holds."
            )
        bias_name = moe.group_routing.bias_name if moe.group_routing is not None else None
        if bias_name is not None:
            bullets.append(
                f"``moe.expert_bias`` (auxiliary-loss-free balancing) is the router's "
                f"{_code(bias_name)} buffer, in the checkpoint both ways."
            )
    if moe is not None and (moe.group_routing is None or moe.group_routing.bias_name is None):
        bullets.append(
            "``moe.expert_bias`` (auxiliary-loss-free balancing) is not in transformers' "
            "checkpoints: ``from_hf`` starts it at zero and ``to_hf`` leaves it out, so a model "
            "trained with a non-zero bias routes differently once exported."
        )
    if c.conv1d:
        modules = _and([_code(name) for name in c.conv1d])
        bullets.append(
            f"Conv1D weights: {modules} store the transpose of ``nn.Linear``'s weight (input "
            "features first): weights are transposed both ways, biases not."
        )
    if c.legacy_names:
        renamed = ", ".join(f"{_code(old)} as {_code(new)}" for old, new in c.legacy_names)
        bullets.append(
            f"Other names: ``from_hf`` also reads {renamed}, the name some files use; ``to_hf`` "
            "writes the checkpoint's own."
        )
    if c.buffers:
        bullets.append(
            f"Non-parameter buffers some checkpoints carry ({', '.join(map(_code, c.buffers))}) "
            "are skipped by ``from_hf``."
        )
    if c.extra_layers:
        bullets.append(
            "Layers past num_hidden_layers in the hub's checkpoints (the multi-token prediction "
            "modules of num_nextn_predict_layers) are not part of this model: ``from_hf`` skips "
            "them."
        )
    if c.hub_unprefixed:
        bullets.append(
            f"The hub's checkpoints may name keys without the {_code(c.prefix + '.')} prefix; "
            "``from_hf`` reads those too."
        )
    return bullets


def _exactness(c: CheckpointLayout, experts: bool = False) -> str:
    changes = ["transposed"] if c.conv1d else []
    if c.fused_qkv is not None or c.fused_gate_up is not None or experts:
        changes.append("split or concatenated" if not experts else "split or stacked")
    if not changes:
        return (
            "Tensors pass through untouched (plain tensors or DTensors), so a round trip is "
            "bit-identical."
        )
    changed = ", ".join(["renamed", *changes])
    return f"Tensors are {changed} exactly, so a round trip is bit-identical."


def _experts_fused(spec: ArchSpec) -> bool:
    moe = spec.features.moe
    return moe is not None and moe.layout.fused_input is not None


def _interleaved(spec: ArchSpec) -> bool:
    moe = spec.features.moe
    return moe is not None and moe.layout.interleaved


def _transposed(spec: ArchSpec) -> tuple[str, ...]:
    """Stacked expert weights whose last two dimensions the checkpoint swaps (the fused
    gate/up tensor is transposed by split_gate_up)."""
    if not _interleaved(spec):
        return ()
    c, ml = spec.features.checkpoint, spec.features.moe.layout
    return (f"{c.prefix}.{c.blocks}.{{}}.{ml.module}.experts.{ml.fused_output}",)


def _mxfp4(spec: ArchSpec) -> tuple[str, ...]:
    """The stacked expert weights the hub's files store as MXFP4 pairs."""
    moe = spec.features.moe
    if moe is None or not moe.layout.mxfp4:
        return ()
    c, ml = spec.features.checkpoint, moe.layout
    experts = f"{c.prefix}.{c.blocks}.{{}}.{ml.module}.experts."
    return (f"{experts}{ml.fused_input}", f"{experts}{ml.fused_output}")


def _split_parts(spec: ArchSpec) -> str:
    if _interleaved(spec):
        return "split_gate_up(value)"
    if spec.features.checkpoint.qkv_per_head:
        return "split_qkv(value, self.model_args.n_heads)"
    if _experts_fused(spec):  # [experts, 2 * ffn, dim]: each expert's gate rows, then up rows
        return "value.chunk(2, dim=1)"
    return "value.split(self.split_sizes[template])"


def _fuse_parts(spec: ArchSpec) -> str:
    if _interleaved(spec):
        return "fuse_gate_up(parts[0], parts[1])"
    if spec.features.checkpoint.qkv_per_head:
        return "fuse_qkv(parts[0], parts[1], parts[2], self.model_args.n_heads)"
    if _experts_fused(spec):
        return "torch.cat([parts[0], parts[1]], dim=1)"
    return "torch.cat([parts[place] for place in sorted(parts)])"


def _older_key(c: CheckpointLayout, hub_prefix: str | None) -> str:
    """The test's expression: ``key`` as older checkpoints write it."""
    older_names = {new: old for old, new in c.legacy_names}
    if len(older_names) == 1:
        ((new, old),) = older_names.items()
        expression = f"({old!r} if key == {new!r} else key)"
    elif older_names:
        expression = f"{older_names!r}.get(key, key)"
    else:
        expression = "key"
    if hub_prefix is not None:
        expression = f"{expression}.removeprefix({hub_prefix!r})"
    return expression


def _experts(spec: ArchSpec) -> tuple[tuple[str, str], ...]:
    """Per-expert checkpoint tensors and the stacked weights they make up."""
    moe = spec.features.moe
    if moe is None or moe.layout.fused_input is not None:
        return ()
    c, ml = spec.features.checkpoint, moe.layout
    expert = f"{c.prefix}.{c.blocks}.{{}}.{ml.module}.experts.{{}}."
    return tuple(
        (f"{expert}{theirs}.weight", f"layers.{{}}.moe.experts.{ours}")
        for theirs, ours in ((ml.gate, "w1"), (ml.up, "w3"), (ml.down, "w2"))
    )


def _router_key(spec: ArchSpec) -> str:
    moe = spec.features.moe
    if moe is None:
        return ""
    c = spec.features.checkpoint
    return f"{c.prefix}.{c.blocks}.{{}}.{moe.layout.module}.{moe.layout.router}.weight"


def _selection_bias(spec: ArchSpec) -> str:
    moe = spec.features.moe
    if moe is None or moe.group_routing is None:
        return ""
    return moe.group_routing.bias_name or ""


def _bias_outside_checkpoint(spec: ArchSpec) -> bool:
    """Our expert bias is not a checkpoint tensor (from_hf starts it at zero)."""
    moe = spec.features.moe
    if moe is None:
        return False
    return moe.group_routing is None or moe.group_routing.bias_name is None


def adapter_view(spec: ArchSpec) -> AdapterView:
    c = spec.features.checkpoint
    qkv_bias = spec.attention_bias or spec.features.biases.qkv_only
    from_hf = _from_hf(spec, qkv_bias)
    fused, size_locals = _fused(spec, qkv_bias)
    for keys in (
        [theirs for theirs, _ in from_hf] + [f.theirs for f in fused],
        [ours for _, ours in from_hf] + [ours for f in fused for ours in f.ours],
    ):
        if len(set(keys)) != len(keys):
            raise ScaffoldError(f"checkpoint layout maps two tensors to one key: {sorted(keys)}")
    block = f"{c.prefix}.{c.blocks}.{{}}."
    embedding_key = f"{c.prefix}.{c.embedding}.weight"
    hub_prefix = f"{c.prefix}." if c.hub_unprefixed else None
    older_buffers = tuple(block + name for name in c.buffers)
    if hub_prefix is not None:
        older_buffers = tuple(name.removeprefix(hub_prefix) for name in older_buffers)
    older = [f"{old} for {new}" for old, new in c.legacy_names]  # e.g. lm_head for embed_out
    if hub_prefix is not None:
        older.append(f'keys without the "{hub_prefix}" prefix')
    if c.buffers:
        older.append("non-parameter buffers")
    return AdapterView(
        bullets=tuple(_bullets(spec, embedding_key)),
        exactness=_exactness(c, experts=spec.features.moe is not None),
        from_hf=tuple(from_hf),
        fused=tuple(fused),
        per_head=c.qkv_per_head,
        split_parts=_split_parts(spec),
        fuse_parts=_fuse_parts(spec),
        size_locals=tuple(size_locals),
        conv1d=tuple(f"{block}{name}.weight" for name in c.conv1d),
        buffers=tuple(block + name for name in c.buffers),
        legacy_names=c.legacy_names,
        hub_prefix=hub_prefix,
        kept_prefixes=(f"{c.prefix}.", f"{c.lm_head}."),
        embedding_key=embedding_key,
        lm_head_key=f"{c.lm_head}.weight",
        older_key=_older_key(c, hub_prefix),
        older_buffers=older_buffers,
        older_doc=f"Older checkpoints: {_and(older)}." if older else "",
        experts=_experts(spec),
        expert_bias="layers.{}.moe.expert_bias" if _bias_outside_checkpoint(spec) else "",
        router_key=_router_key(spec),
        extra_layers=c.extra_layers,
        selection_bias=_selection_bias(spec),
        transposed=_transposed(spec),
        interleaved=_interleaved(spec),
        mxfp4=_mxfp4(spec),
        float32=c.float32,
    )

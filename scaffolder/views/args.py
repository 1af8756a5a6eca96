"""The args area: ``model/args.py``, computed as one table from the recipe's config fields.

Each :class:`Field` is a ``ModelArgs`` field with the config.json field it comes from (named in
its comment), its full-size value and the expression ``from_hf`` reads it with; each
:class:`Fixed` is an ``ARCHITECTURE`` entry with the expression ``check_architecture`` finds in
a config.json; each :class:`Entry` is one key of ``to_hf``. All three come from the spec's
:class:`~scaffolder.config_fields.ConfigFields` (names, the config class's defaults) and its
features, so a field is read, written and refused from the same facts.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

from scaffolder.spec import ArchSpec

# Rope types whose rope_parameters carry a scaling factor.
SCALED_ROPE_TYPES = ("linear", "dynamic", "llama3", "yarn")
# YaRN's beta_fast and beta_slow where rope_scaling has none (transformers' defaults).
YARN_BETAS = (32.0, 1.0)
YARN_MSCALE_TEXT = "0.1 * {} * ln({}) + 1"
# The helper functions' parts (parts/args/<name>.py.j2), in the order the module defines them.
HELPERS = (
    "dense_layers",
    "rope_parameters",
    "rope_parameters_per_layer_type",
    "longrope",
    "yarn",
    "max_window_layers",
    "sliding_window_pattern",
    "is_set",
)
SLIDING_DOCS = {
    "all": "sliding_window: a query attends to itself and the sliding_window - 1 tokens before "
    "it, in every layer.",
    "from_max_window_layers": "sliding_window: a query attends to itself and the "
    "sliding_window - 1 tokens before it, in layers max_window_layers and up "
    "(use_sliding_window); the layers below attend fully.",
    "sliding_window_pattern": "Layer i attends through a window of sliding_window tokens unless "
    "(i + 1) is a multiple of sliding_window_pattern; those layers attend to the whole prefix "
    "(layer_types).",
}


@dataclass(frozen=True)
class Field:
    """A ModelArgs field: annotation, full-size value, the comment naming its config.json field,
    the comment lines above it, and the expression ``from_hf`` reads it with (empty: not a
    config.json field, ``from_hf`` keeps the default)."""

    name: str
    type: str
    value: Any
    comment: str
    read: str
    doc: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fixed:
    """An ARCHITECTURE entry (a feature fixed by the package's code) and the expression that
    finds it in a config.json; ``doc`` and ``found_doc`` are comment lines above each."""

    key: str
    value: Any
    found: str
    doc: tuple[str, ...] = ()
    found_doc: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entry:
    """A key of ``to_hf``'s dict, its Python expression and comment lines above it."""

    key: str
    value: str
    doc: tuple[str, ...] = ()


@dataclass(frozen=True)
class Property:
    """A ModelArgs attribute derived from its fields."""

    name: str
    doc: str
    expr: str


@dataclass(frozen=True)
class ArgsView:
    """What ``model/args.py`` prints; see the module docstring.

    ``rope_setup``: the line (if any) ``check_architecture`` starts with; ``from_hf_setup``: it
    and the lines ``from_hf`` needs before building the args. ``helpers``: parts under
    ``parts/args/`` defining the module's helper functions, which read ``rope_folds`` (rope key,
    old-style top-level field, default), ``rope_old`` (prose naming those fields),
    ``rope_aliases``, ``layer_rope_thetas`` (full-attention and sliding defaults),
    ``max_window_layers_default``, ``pattern_fallback`` and ``pattern_doc``, and ``longrope``
    (the reads of original_max_position_embeddings and max_position_embeddings).
    """

    imports: tuple[str, ...]
    fixed: tuple[Fixed, ...]
    fields: tuple[Field, ...]
    properties: tuple[Property, ...]
    rope_setup: tuple[str, ...]
    from_hf_setup: tuple[str, ...]
    from_hf_doc: tuple[str, ...]
    to_hf: tuple[Entry, ...]
    seq_len_unbounded: bool
    matmul_params: tuple[str, ...]
    helpers: tuple[str, ...]
    class_parts: tuple[str, ...] = ()  # parts/args/<name>.py.j2 inside ModelArgs
    rope_folds: tuple[tuple[str, str, Any], ...] = ()
    rope_old: str = ""
    rope_aliases: tuple[str, ...] = ()
    rope_default: tuple[tuple[str, Any], ...] = ()  # (key, value): the config class's own rope
    layer_rope_thetas: tuple[float, float] | None = None
    max_window_layers_default: int | None = None
    pattern_fallback: str = ""
    pattern_doc: str = ""
    longrope: dict[str, str] = field(default_factory=dict)
    attention_flops: str = "6 * self.n_layers * self.n_heads * 2 * self.head_dim * seq_len"


def literal(value: Any) -> str:
    """A Python literal for a scalar default (strings double-quoted, as ruff writes them)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def comment_lines(text: str) -> tuple[str, ...]:
    """``text`` wrapped for ``# `` comments in the class body (100 columns)."""
    return tuple(textwrap.wrap(text, width=100 - len("    # ")))


def code_names(names: list[str]) -> str:
    """``a``, ``b`` and ``c``."""
    quoted = [f"``{name}``" for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def py_dict(items: list[tuple[str, str]]) -> str:
    """A dict display with a magic trailing comma (ruff puts one item per line)."""
    return "{" + ", ".join(f"{json.dumps(key)}: {value}" for key, value in items) + ",}"


class _Builder:
    """Collects the rows of one spec's args.py, concern by concern."""

    def __init__(self, spec: ArchSpec) -> None:
        self.spec = spec
        self.features = spec.features
        self.cf = spec.config_fields
        self.fields: list[Field] = []
        self.fixed: list[Fixed] = []
        self.properties: list[Property] = []
        self.class_parts: list[str] = []
        self.helpers: list[str] = []
        self.from_hf_setup: list[str] = []
        self.dims: list[Entry] = []  # to_hf: the dimensions
        self.rope: list[tuple[str, str]] = []  # rope_parameters (its full_attention part)
        self.local_rope: list[tuple[str, str]] = []  # rope_parameters' sliding_attention part
        self.rope_extra: list[Entry] = []  # to_hf: top-level rope fields
        self.written: list[Entry] = []  # to_hf: ARCHITECTURE entries that are config fields
        self.tail: list[Entry] = []  # to_hf: the features' fields
        self.rope_folds: list[tuple[str, str, Any]] = []

    # ------------------------------------------------------------------ reading config.json

    def get(self, name: str, fallback: str = "") -> str:
        """The read of config.json field ``name``: required, else with the class's default
        (and ``fallback`` where the value is null)."""
        if self.cf.is_required(name):
            return f"config[{json.dumps(name)}]"
        default = self.cf.defaults[name]
        default_arg = "" if default is None else f", {literal(default)}"
        read = f"config.get({json.dumps(name)}{default_arg})"
        return f"{read} or {fallback}" if fallback else read

    def add(self, arg: str, type_: str, value: Any, comment: str, read: str, doc: str = "") -> None:
        self.fields.append(Field(arg, type_, value, comment, read, comment_lines(doc)))

    def add_config(
        self, arg: str, type_: str, value: Any, note: str = "", doc: str = "", name: str = ""
    ) -> None:
        """A field read from (and written to) the top-level config.json field ``name`` (default:
        the config fields' name of ``arg``)."""
        name = name or self.cf.name(arg)
        self.add(arg, type_, value, name + note, self.get(name), doc)
        self.tail.append(Entry(name, f"self.{arg}"))

    def add_rope(self, arg: str, key: str, type_: str, value: Any) -> None:
        """A field read from (and written to) rope_parameters' ``key``."""
        self.add(arg, type_, value, f"rope_scaling.{key}", f"rope[{json.dumps(key)}]")
        self.rope.append((key, f"self.{arg}"))

    # ------------------------------------------------------------------ ModelArgs fields

    def dimensions(self) -> None:
        """The sizes every family has."""
        s, cf, f = self.spec, self.cf, self.features
        dim, heads, kv, head_dim, ffn, positions = (
            cf.name(arg)
            for arg in ("dim", "n_heads", "n_kv_heads", "head_dim", "ffn_dim", "max_seq_len")
        )
        rows = [
            ("vocab_size", "vocab_size", self.get("vocab_size")),
            ("dim", dim, self.get(dim)),
            ("n_layers", cf.name("n_layers"), self.get(cf.name("n_layers"))),
            ("n_heads", heads, self.get(heads)),
        ]
        if f.latent_attention is not None:
            # Every head has its own keys and values, expanded from the latent.
            self.dims.append(Entry(kv, "self.n_heads"))
            self.properties.append(
                Property(
                    "n_kv_heads",
                    "Latent attention expands keys and values for every head.",
                    "self.n_heads",
                )
            )
        elif f.names.derived_head_dims:
            self.properties += [
                Property(
                    "head_dim",
                    f"{dim} // {heads}: {s.hf_config_class} has no separate head_dim.",
                    "self.dim // self.n_heads",
                ),
                Property(
                    "n_kv_heads",
                    "Multi-head attention: every head has its own keys and values.",
                    "self.n_heads",
                ),
            ]
        else:
            n_heads = self.get(heads)
            if not (cf.is_required(kv) and cf.is_required(head_dim)):
                # A missing (or null) num_key_value_heads or head_dim falls back on the heads.
                self.from_hf_setup.append(f"n_heads = {n_heads}")
                n_heads = "n_heads"
                rows[-1] = ("n_heads", heads, n_heads)
            rows += [
                ("n_kv_heads", kv, self.get(kv, n_heads)),
                ("head_dim", head_dim, self.get(head_dim, f"{self.get(dim)} // {n_heads}")),
            ]
        rows += [
            ("ffn_dim", ffn, self.get(ffn, f"4 * {self.get(dim)}")),
            ("max_seq_len", positions, self.get(positions)),
        ]
        if f.latent_attention is not None:
            rows = [row for row in rows if row[0] not in ("n_kv_heads", "head_dim")]
        notes = {
            "head_dim": "" if s.explicit_head_dim else f" ({dim} // {heads})",
            "ffn_dim": "" if cf.is_required(ffn) else f" (null: 4 * {dim})",
            "max_seq_len": ": rows of the learned position table" if f.learned_positions else "",
        }
        for arg, name, read in rows:
            self.add(arg, "int", getattr(s, arg), name + notes.get(arg, ""), read)
            self.dims.append(Entry(name, f"self.{arg}"))
        eps = f.norm.eps_field
        self.add("norm_eps", "float", s.norm_eps, eps, self.get(eps))
        self.dims.append(Entry(eps, "self.norm_eps"))

    def rope_fields(self) -> None:
        """RoPE: the base, scaling, local (sliding-layer) RoPE, LongRoPE, partial rotary."""
        s, cf, f = self.spec, self.cf, self.features
        rope = s.rope
        theta = cf.name("rope_theta")
        note = "" if theta == "rope_theta" else f" (old configs: {theta})"
        if f.local_rope is not None:
            note += " (full-attention layers)"
        else:
            self.rope_folds.append(("rope_theta", theta, cf.defaults[theta]))
        self.add("rope_theta", "float", rope.theta, "rope_theta" + note, 'rope["rope_theta"]')
        self.rope += [("rope_type", 'ARCHITECTURE["rope_type"]'), ("rope_theta", "self.rope_theta")]
        if rope.type in SCALED_ROPE_TYPES:
            self.add_rope("rope_factor", "factor", "float", rope.factor)
        if rope.type == "llama3":
            self.add_rope("rope_low_freq_factor", "low_freq_factor", "float", rope.low_freq_factor)
            self.add_rope(
                "rope_high_freq_factor", "high_freq_factor", "float", rope.high_freq_factor
            )
            self.add_rope(
                "rope_original_max_seq_len",
                "original_max_position_embeddings",
                "int",
                rope.original_max_position_embeddings,
            )
        if rope.type == "yarn":
            self.yarn_fields()
        if f.local_rope is not None:
            self.local_rope_fields()
        if f.longrope is not None:
            self.longrope_fields()
        if f.partial_rotary_field:
            self.partial_rotary_fields()

    def yarn_fields(self) -> None:
        """YaRN: the pretraining length, the ramp's rotation bounds, the cos/sin scale."""
        rope = self.spec.rope
        self.add(
            "rope_original_max_seq_len",
            "int",
            rope.original_max_position_embeddings,
            "rope_scaling.original_max_position_embeddings",
            'rope.get("original_max_position_embeddings") or '
            + self.get(self.cf.name("max_seq_len")),
            "YaRN interpolates the frequencies that turn fewer than beta_slow times over the "
            "original_max_position_embeddings positions the model was pretrained on (divided by "
            "factor), keeps those turning more than beta_fast times, and ramps linearly between.",
        )
        self.rope.append(("original_max_position_embeddings", "self.rope_original_max_seq_len"))
        for arg, key, default in (
            ("rope_beta_fast", "beta_fast", YARN_BETAS[0]),
            ("rope_beta_slow", "beta_slow", YARN_BETAS[1]),
        ):
            value = getattr(rope, key)
            self.add(
                arg, "float", value, f"rope_scaling.{key}", f"rope.get({key!r}) or {default!r}"
            )
            self.rope.append((key, f"self.{arg}"))
        for arg, key in (("rope_mscale", "mscale"), ("rope_mscale_all_dim", "mscale_all_dim")):
            value = getattr(rope, key)
            if value is not None:
                self.add(arg, "float | None", value, f"rope_scaling.{key}", f"rope.get({key!r})")
                self.rope.append((key, f"self.{arg}"))
        self.add(
            "rope_attention_factor",
            "float",
            rope.attention_factor,
            "rope_scaling.attention_factor",
            "yarn_attention_factor(rope)",
            yarn_attention_doc(rope),
        )
        self.rope.append(("attention_factor", "self.rope_attention_factor"))
        self.helpers.append("yarn")

    def local_rope_fields(self) -> None:
        local = self.features.local_rope
        name = self.cf.name("rope_local_theta")
        self.add(
            "rope_local_theta",
            "float",
            local.theta,
            f"{name} (sliding layers)",
            'local_rope["rope_theta"]',
        )
        self.local_rope += [
            ("rope_type", 'ARCHITECTURE["local_rope_type"]'),
            ("rope_theta", "self.rope_local_theta"),
        ]
        if local.type == "linear":
            self.add(
                "rope_local_factor",
                "float",
                local.factor,
                "rope_parameters.sliding_attention.factor",
                'local_rope["factor"]',
            )
            self.local_rope.append(("factor", "self.rope_local_factor"))

    def longrope_fields(self) -> None:
        s, cf, longrope = self.spec, self.cf, self.features.longrope
        original = cf.name("rope_original_max_seq_len")
        self.add(
            "rope_original_max_seq_len",
            "int",
            s.rope.original_max_position_embeddings,
            original,
            self.get(original),
            'rope_scaling "longrope": frequencies divided by one factor each, short_factor for '
            "sequences up to original_max_position_embeddings, long_factor (at every position) "
            "for longer ones; cos and sin are scaled by attention_factor.",
        )
        for key, factors in (
            ("short_factor", longrope.short_factor),
            ("long_factor", longrope.long_factor),
        ):
            arg = f"rope_{key}"
            read = f"tuple(rope[{json.dumps(key)}])"
            self.add(arg, "tuple[float, ...]", factors, f"rope_scaling.{key}", read)
            self.rope.append((key, f"list(self.{arg})"))
        self.add(
            "rope_attention_factor",
            "float",
            longrope.attention_factor,
            "rope_scaling.attention_factor",
            "longrope_attention_factor(config, rope)",
        )
        self.rope += [
            ("attention_factor", "self.rope_attention_factor"),
            ("original_max_position_embeddings", "self.rope_original_max_seq_len"),
        ]
        takes = f"{s.hf_config_class} takes this one over rope_parameters'"
        self.rope_extra.append(
            Entry(
                original,
                "self.rope_original_max_seq_len",
                (f"{takes} (and defaults it to {cf.defaults[original]}).",),
            )
        )
        self.helpers.append("longrope")

    def partial_rotary_fields(self) -> None:
        cf, partial = self.cf, self.features.partial_rotary
        name = cf.name("partial_rotary_factor")
        self.rope_folds.append(("partial_rotary_factor", name, cf.defaults[name]))
        if partial is None:
            if cf.defaults[name] != 1.0:  # the config class would default to a partial rotary
                self.rope.append(("partial_rotary_factor", "1.0"))
            return
        note = "" if name == "partial_rotary_factor" else f" (old configs: {name})"
        self.add(
            "partial_rotary_factor",
            "float",
            partial.factor,
            "partial_rotary_factor" + note,
            'rope["partial_rotary_factor"]',
            "RoPE rotates the first int(head_dim * partial_rotary_factor) channels of each head.",
        )
        self.rope.append(("partial_rotary_factor", "self.partial_rotary_factor"))
        self.properties.append(
            Property(
                "rotary_dim",
                "Channels of each head that RoPE rotates.",
                "int(self.head_dim * self.partial_rotary_factor)",
            )
        )

    def sliding_fields(self) -> None:
        """The window and which layers slide, and ``to_hf``'s keys for them."""
        sliding = self.features.sliding_window
        if sliding is None:
            return
        layout = sliding.layout
        if not sliding.active:
            if layout == "all":
                self.tail.append(Entry("sliding_window", "None"))
            else:
                self.tail += [
                    Entry("use_sliding_window", "False"),
                    Entry("layer_types", '["full_attention"] * self.n_layers'),
                ]
            return
        read = self.get("sliding_window")
        self.add(
            "sliding_window", "int", sliding.window, "sliding_window", read, SLIDING_DOCS[layout]
        )
        window = Entry("sliding_window", "self.sliding_window")
        if layout == "all":
            self.tail.append(window)
        elif layout == "from_max_window_layers":
            self.add(
                "max_window_layers",
                "int",
                sliding.max_window_layers,
                "max_window_layers",
                "max_window_layers(config)",
            )
            self.tail += [
                Entry("use_sliding_window", "True"),
                window,
                Entry("max_window_layers", "self.max_window_layers"),
                Entry(
                    "layer_types",
                    '["sliding_attention" if layer_id >= self.max_window_layers else '
                    '"full_attention" for layer_id in range(self.n_layers)]',
                    (
                        "Explicit, so a base config.json's layer_types for other sizes cannot "
                        "stand.",
                    ),
                ),
            ]
            self.helpers.append("max_window_layers")
        else:
            with_field = "sliding_window_pattern" in self.cf.defaults
            self.add(
                "sliding_window_pattern",
                "int",
                sliding.pattern,
                "layer_types / sliding_window_pattern" if with_field else "layer_types",
                "sliding_window_pattern(config)",
            )
            self.tail += [
                window,
                Entry(
                    "layer_types",
                    '["full_attention" if (i + 1) % self.sliding_window_pattern == 0 else '
                    '"sliding_attention" for i in range(self.n_layers)]',
                ),
            ]
            self.helpers.append("sliding_window_pattern")

    def attention_fields(self) -> None:
        """The softmax scale and the soft caps of scores and logits."""
        f = self.features
        if f.query_pre_attn_scalar is not None:
            self.add_config(
                "query_pre_attn_scalar",
                "int",
                f.query_pre_attn_scalar,
                doc="Attention scores scale by query_pre_attn_scalar ** -0.5 "
                "(not head_dim ** -0.5).",
            )
        for name, value in self.softcaps():
            if value is None:
                self.tail.append(Entry(name, "None"))
            else:
                self.add_config(name, "float", value)

    def softcaps(self) -> list[tuple[str, float | None]]:
        """The config's soft-capping fields and their values (None: not capped)."""
        softcap = self.features.softcap
        if softcap is None:
            return []
        caps = [("final_logit_softcapping", softcap.final)]
        if softcap.attention_field:
            caps.insert(0, ("attn_logit_softcapping", softcap.attention))
        return caps

    def multiplier_fields(self) -> None:
        multipliers = self.features.multipliers
        if multipliers is None:
            return
        for arg, value, note in (
            ("embedding_multiplier", multipliers.embedding, ": scales the embeddings"),
            ("residual_multiplier", multipliers.residual, ": scales sublayer outputs"),
            ("attention_multiplier", multipliers.attention, ": the softmax scale"),
            ("logits_scaling", multipliers.logits, ": logits are divided by it"),
        ):
            self.add_config(arg, "float", value, note)

    def padding_fields(self) -> None:
        padding, default = self.features.padding, self.cf.defaults.get("pad_token_id")
        if padding is not None:
            self.add_config(
                "pad_token_id",
                "int | None",
                padding.pad_token_id,
                doc="The token whose embedding row gets no gradient (transformers' padding_idx); "
                "None: none.",
            )
        elif default is not None:
            doc = (f"{self.spec.hf_config_class} would default it to {default}.",)
            self.tail.append(Entry("pad_token_id", "None", doc))

    def dropout_fields(self) -> None:
        """Attention dropout (in training), and the dropouts ``to_hf`` states as 0."""
        cf, dropout = self.cf, self.features.attention_dropout
        if dropout:
            self.add_config("attention_dropout", "float", dropout, " (training only)")
        for name in cf.zeroed:
            doc = ()
            if name == cf.zeroed[0]:
                each = "each" if len(cf.zeroed) > 1 else "it"
                default = cf.defaults[name]
                doc = (
                    f"The model trains without dropout; {self.spec.hf_config_class} would "
                    f"default {each} to {default}.",
                )
            self.tail.append(Entry(name, "0.0", doc))

    def moe_fields(self) -> None:
        """The experts: how many, how many per token, their sizes, which layers have them."""
        s, moe = self.spec, self.features.moe
        if moe is None:
            return
        self.add_config("num_experts", "int", moe.num_experts, name=moe.experts_field)
        self.add_config("top_k", "int", moe.top_k, name="num_experts_per_tok")
        if moe.expert_ffn_arg == "moe_ffn_dim":
            self.add_config(
                "moe_ffn_dim",
                "int",
                moe.ffn_dim,
                doc="Each expert's hidden size; intermediate_size (ffn_dim) is the dense MLPs'.",
                name=moe.ffn_field,
            )
        if moe.shared_field == "n_shared_experts":
            self.add_config(
                "n_shared_experts",
                "int",
                moe.shared_ffn_dim // moe.ffn_dim,
                doc="One shared SwiGLU MLP of n_shared_experts * moe_intermediate_size sees every "
                "token.",
            )
        elif moe.shared_ffn_dim is not None:
            self.add_config(
                "shared_ffn_dim", "int", moe.shared_ffn_dim, name="shared_expert_intermediate_size"
            )
        if moe.group_routing is not None:
            self.group_routing_fields()
        if moe.first_dense is not None:
            self.add_config(
                "first_k_dense_replace",
                "int",
                moe.first_dense,
                doc="The first first_k_dense_replace layers have a dense MLP of ffn_dim, the "
                "others experts.",
            )
            self.class_parts.append("is_moe_layer_first_dense")
        elif moe.has_dense_layers(s.n_layers):
            self.add_config(
                "decoder_sparse_step",
                "int",
                moe.sparse_step,
                doc="Layer i has experts when (i + 1) % decoder_sparse_step == 0 and it is not in "
                "mlp_only_layers; the others have a dense MLP of ffn_dim.",
            )
            self.add(
                "mlp_only_layers",
                "tuple[int, ...]",
                moe.mlp_only_layers,
                "mlp_only_layers",
                f"tuple({self.get('mlp_only_layers', '[]')})",
            )
            self.tail.append(Entry("mlp_only_layers", "list(self.mlp_only_layers)"))
            self.class_parts.append("is_moe_layer")
        elif moe.sparse_step is not None:
            self.tail += [Entry("decoder_sparse_step", "1"), Entry("mlp_only_layers", "[]")]
        if moe.activation == "clamped_swiglu":
            self.add_config(
                "swiglu_limit",
                "float",
                moe.swiglu_limit,
                doc="The experts clamp gate above and up on both sides at swiglu_limit.",
            )
            self.add_config(
                "swiglu_alpha", "float", moe.swiglu_alpha, ": the sigmoid's gain in the SwiGLU"
            )
        if moe.group_routing is None:
            self.add_config("router_aux_loss_coef", "float", moe.aux_loss_coef)
        self.add(
            "use_grouped_mm",
            "bool",
            True,
            "not in config.json",
            "",
            "Experts multiply with torch._grouped_mm where it applies; False: one expert after "
            "the other (the reference, same values).",
        )

    def group_routing_fields(self) -> None:
        """DeepSeek's router: groups of experts and the weights' scale."""
        routing = self.features.moe.group_routing
        if routing.grouped:
            self.add_config(
                "n_group",
                "int",
                routing.n_group,
                doc="Experts are split into n_group groups; a token's experts come from its "
                "topk_group best groups.",
            )
            self.add_config("topk_group", "int", routing.topk_group)
        self.add_config(
            "routed_scaling_factor",
            "float",
            routing.scaling_factor,
            doc="The routed experts' weights are multiplied by routed_scaling_factor.",
        )

    def latent_attention_fields(self) -> None:
        """Multi-head latent attention's ranks and head parts."""
        latent = self.features.latent_attention
        if latent is None:
            return
        if latent.q_lora_rank is not None:
            self.add_config(
                "q_lora_rank",
                "int",
                latent.q_lora_rank,
                doc="Queries: q_a_proj to q_lora_rank, RMSNorm, q_b_proj to the heads.",
            )
        else:
            self.tail.append(
                Entry(
                    "q_lora_rank",
                    "None",
                    (f"One q_proj; {self.spec.hf_config_class} would default to a low-rank path.",),
                )
            )
        self.add_config(
            "kv_lora_rank",
            "int",
            latent.kv_lora_rank,
            doc="Keys and values: kv_a_proj_with_mqa to a kv_lora_rank latent (plus the shared "
            "rotary key), RMSNorm, kv_b_proj to every head's keys and values.",
        )
        self.add_config(
            "qk_nope_head_dim", "int", latent.qk_nope_head_dim, ": channels without positions"
        )
        self.add_config("qk_rope_head_dim", "int", latent.qk_rope_head_dim, ": rotated channels")
        self.add_config("v_head_dim", "int", latent.v_head_dim)

    # ------------------------------------------------------------------ ARCHITECTURE

    def architecture(self) -> None:
        """Features fixed by the package's code, each as found in a config.json."""
        s, cf, f = self.spec, self.cf, self.features
        act = f.names.activation
        found, found_doc = self.get(act), ()
        if cf.activation_aliases:
            names = [literal(alias) for alias in cf.activation_aliases]
            test = f"== {names[0]}" if len(names) == 1 else f"in ({', '.join(names)})"
            found = f"{literal(s.hidden_act)} if config.get({json.dumps(act)}) {test} else {found}"
            found_doc = (f"{s.hf_config_class} reads {' and '.join(names)} as {s.hidden_act}.",)
        self.fixed += [
            Fixed("model_type", s.model_type, 'config.get("model_type")'),
            Fixed(act, s.hidden_act, found, found_doc=found_doc),
        ]
        if s.rope is not None:
            self.fixed.append(Fixed("rope_type", s.rope.type, 'rope["rope_type"]'))
        if s.rope is not None and s.rope.type == "yarn":
            self.fixed.append(
                Fixed(
                    "rope_truncate",
                    s.rope.truncate,
                    'rope.get("truncate", True)',
                    ("rope_scaling.truncate: YaRN's ramp bounds rounded to whole dimensions.",),
                )
            )
            self.rope.append(("truncate", 'ARCHITECTURE["rope_truncate"]'))
        if f.local_rope is not None:
            self.fixed.append(
                Fixed("local_rope_type", f.local_rope.type, 'local_rope["rope_type"]')
            )
        biases = {
            "attention_bias": s.attention_bias,
            "mlp_bias": s.mlp_bias,
            "use_bias": s.attention_bias,
        }
        switches = {
            "tie_word_embeddings": s.tie_word_embeddings,
            **{name: biases[name] for name in f.biases.fields},
            **cf.switches,
        }
        self.fixed += [Fixed(name, value, self.get(name)) for name, value in switches.items()]
        self.written = [
            Entry(name, f"ARCHITECTURE[{json.dumps(name)}]") for name in (act, *switches)
        ]
        for index, (name, value) in enumerate(self.softcaps()):
            doc = ()
            if index == 0:
                doc = (
                    "\"set\": the package's code uses the field's value (in ModelArgs); None: it "
                    "has no such step.",
                )
            marker = None if value is None else "set"
            self.fixed.append(Fixed(name, marker, f"is_set({self.get(name)})", doc))
            self.helpers.append("is_set")
        if f.sliding_window is not None:
            self.fixed.append(
                Fixed("sliding_window_attention", f.sliding_window.active, self.sliding_found())
            )
        if f.partial_rotary_field:
            partial = f.partial_rotary is not None
            found = 'rope["partial_rotary_factor"] != 1.0'
            self.fixed.append(Fixed("partial_rotary", partial, found))
        if f.latent_attention is not None and "rope_interleave" in cf.defaults:
            interleaved = f.latent_attention.interleaved
            self.fixed.append(Fixed("rope_interleave", interleaved, self.get("rope_interleave")))
            self.written.append(Entry("rope_interleave", 'ARCHITECTURE["rope_interleave"]'))
        moe = f.moe
        method = moe.group_routing.method if moe is not None and moe.group_routing else None
        if method is not None:
            self.fixed.append(Fixed("topk_method", method, self.get("topk_method")))
            self.written.append(Entry("topk_method", 'ARCHITECTURE["topk_method"]'))
        if moe is not None and moe.renormalize_field is not None:
            name = moe.renormalize_field
            self.fixed.append(Fixed(name, moe.renormalize, self.get(name)))
            self.written.append(Entry(name, f"ARCHITECTURE[{json.dumps(name)}]"))
        if moe is not None and moe.sparse_step is not None and not moe.has_dense_layers(s.n_layers):
            self.fixed.append(
                Fixed(
                    "dense_layers",
                    False,
                    "has_dense_layers(config)",
                    ("Every layer has experts: no decoder_sparse_step or mlp_only_layers gaps.",),
                )
            )
            self.helpers.append("dense_layers")

    def sliding_found(self) -> str:
        """Whether a config.json slides any layer, as transformers reads it."""
        sliding = self.features.sliding_window
        window = f"{self.get('sliding_window')} is not None"
        if sliding.layout != "from_max_window_layers":
            return window
        layers = f"config[{json.dumps(self.cf.name('n_layers'))}]"
        switch = f"bool({self.get('use_sliding_window')}) and {window}"
        if sliding.active:
            return f"{switch} and max_window_layers(config) < {layers}"
        return (
            f'{switch} and ("sliding_attention" in config["layer_types"] if '
            f'config.get("layer_types") else {self.get("max_window_layers")} < {layers})'
        )

    # ------------------------------------------------------------------ the view

    def build(self) -> ArgsView:
        s, cf, f = self.spec, self.cf, self.features
        self.dimensions()
        if s.rope is not None:
            self.rope_fields()
        self.sliding_fields()
        self.attention_fields()
        self.multiplier_fields()
        self.padding_fields()
        self.dropout_fields()
        self.latent_attention_fields()
        self.moe_fields()
        self.add_config("initializer_range", "float", s.initializer_range)
        self.architecture()

        rope_setup: tuple[str, ...] = ()
        rope_entry: list[Entry] = []
        from_hf_doc = []
        if s.rope is not None:
            rope = py_dict(self.rope)
            if f.local_rope is None:
                rope_setup = ("rope = rope_parameters(config)",)
                self.helpers.append("rope_parameters")
                old_rope = [name for _, name, _ in self.rope_folds]
                new_rope = "``rope_parameters``"
            else:
                rope_setup = ("rope, local_rope = rope_parameters(config)",)
                self.helpers.append("rope_parameters_per_layer_type")
                rope = py_dict(
                    [("full_attention", rope), ("sliding_attention", py_dict(self.local_rope))]
                )
                old_rope = ["rope_theta", cf.name("rope_local_theta")]
                new_rope = "``rope_parameters`` per layer type"
            rope_entry = [Entry("rope_parameters", rope)]
            old = code_names([*old_rope, "rope_scaling"])
            from_hf_doc.append(f"Accepts both rope styles: old ({old}) and new ({new_rope}).")
        from_hf_doc.append(f"Missing fields take {s.hf_config_class}'s defaults.")

        if s.tie_word_embeddings:
            matmul = (
                "# Embeddings are tied to the output projection, whose matmul counts: keep them "
                "all.",
                "matmul_params = nparams",
            )
        else:
            matmul = (
                "# The embedding table is a lookup, not a matmul.",
                "embedding_params = sum(p.numel() for p in model.tok_embeddings.parameters())",
                "matmul_params = nparams - embedding_params",
            )
        if f.moe is not None:
            matmul = (
                "# A token passes through top_k of the num_experts experts: count those.",
                "experts = sum(",
                '    p.numel() for name, p in model.named_parameters() if ".moe.experts." in name',
                ")",
                "nparams_active = nparams - experts + experts * self.top_k // self.num_experts",
                *(line.replace("= nparams", "= nparams_active") for line in matmul),
            )
        if f.learned_positions:
            matmul += (
                "# The learned position table is a lookup too.",
                "matmul_params -= sum(p.numel() for p in model.pos_embeddings.parameters())",
            )

        pattern_fallback = pattern_doc = ""
        if "sliding_window_pattern" in self.helpers:
            if "sliding_window_pattern" in cf.defaults:
                pattern_fallback = self.get("sliding_window_pattern")
                pattern_doc = (
                    "Without it, from ``sliding_window_pattern`` (default "
                    f"{cf.defaults['sliding_window_pattern']}), as transformers builds layer_types."
                )
            else:
                period = cf.implied["sliding_window_pattern"]
                pattern_fallback = str(period)
                pattern_doc = (
                    f"Without it, {s.hf_config_class} builds layer_types with a period of {period}."
                )
        longrope = {}
        if f.longrope is not None:
            longrope = {
                "original": self.get(cf.name("rope_original_max_seq_len")),
                "max_seq_len": self.get(cf.name("max_seq_len")),
            }
        return ArgsView(
            imports=("import math",)
            if f.longrope is not None or (s.rope is not None and s.rope.type == "yarn")
            else (),
            fixed=tuple(self.fixed),
            fields=tuple(self.fields),
            properties=tuple(self.properties),
            rope_setup=rope_setup,
            from_hf_setup=(*rope_setup, *self.from_hf_setup),
            from_hf_doc=tuple(from_hf_doc),
            to_hf=(
                Entry("model_type", 'ARCHITECTURE["model_type"]'),
                *self.dims,
                *rope_entry,
                *self.rope_extra,
                *self.written,
                *self.tail,
            ),
            seq_len_unbounded=s.rope is not None and s.rope.type == "dynamic",
            matmul_params=matmul,
            helpers=tuple(sorted(set(self.helpers), key=HELPERS.index)),
            class_parts=tuple(self.class_parts),
            rope_folds=tuple(self.rope_folds),
            rope_old=code_names([name for _, name, _ in self.rope_folds])
            if self.rope_folds
            else "",
            rope_aliases=f.longrope_aliases,
            rope_default=tuple(cf.rope_default.items()),
            layer_rope_thetas=(
                (cf.defaults["rope_theta"], cf.defaults[cf.name("rope_local_theta")])
                if f.local_rope is not None
                else None
            ),
            max_window_layers_default=cf.defaults.get("max_window_layers"),
            pattern_fallback=pattern_fallback,
            pattern_doc=pattern_doc,
            longrope=longrope,
            **(
                {}
                if f.latent_attention is None
                else {
                    "attention_flops": "6 * self.n_layers * self.n_heads * (self.qk_nope_head_dim "
                    "+ self.qk_rope_head_dim + self.v_head_dim) * seq_len"
                }
            ),
        )


def yarn_attention_doc(rope: Any) -> str:
    """How this config's YaRN attention factor (cos and sin are multiplied by it) comes about."""
    value = f"{rope.attention_factor:.6g}"
    head = "YaRN multiplies cos and sin by rope_scaling.attention_factor"
    infer = (
        "without it, transformers infers it from factor: 0.1 * mscale * ln(factor) + 1 over the "
        "same with mscale_all_dim where both are set, else 0.1 * ln(factor) + 1 (1 for factor "
        "<= 1)"
    )
    if rope.mscale and rope.mscale_all_dim:
        given = (
            f"This config gives none: ({YARN_MSCALE_TEXT.format(rope.mscale, rope.factor)}) / "
            f"({YARN_MSCALE_TEXT.format(rope.mscale_all_dim, rope.factor)}) = {value}"
        )
    else:
        given = f"This config gives none: 0.1 * ln({rope.factor}) + 1 = {value}"
    return (
        f"{head}; {infer}. {given}."
        if rope.attention_factor_inferred
        else (f"{head} ({value}, as the config gives it); {infer}.")
    )


def args_view(spec: ArchSpec) -> ArgsView:
    """The rows of ``spec``'s ``model/args.py``."""
    return _Builder(spec).build()

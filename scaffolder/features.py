"""Typed feature objects: what a family's config switches on, beyond the common dimensions.

A recipe builds one :class:`Features`; templates read its attributes (never a dict lookup with a
default), so a feature a recipe does not set is ``None`` or its documented default, and an
unknown kind fails here, at spec time, instead of falling into a template's ``else``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scaffolder.errors import ScaffoldError

NORM_KINDS = ("rmsnorm", "rmsnorm_1p", "layernorm")
NORM_PLACEMENTS = ("pre", "post", "sandwich")
SLIDING_LAYOUTS = ("all", "from_max_window_layers", "sliding_window_pattern")
QK_NORM_KINDS = ("per_head", "projection")
LOCAL_ROPE_TYPES = ("default", "linear")
MOE_ROUTINGS = ("softmax_topk", "topk_softmax")
# DeepSeek routing: scores of every expert, the best topk_group of n_group groups, top-k in those.
GROUP_SCORINGS = ("sigmoid", "softmax")
EXPERT_ACTIVATIONS = ("swiglu", "clamped_swiglu")


def _check_choice(owner: str, name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ScaffoldError(f"{owner}.{name}: unknown value {value!r}; known: {', '.join(choices)}")


@dataclass(frozen=True)
class Norm:
    """The block's norm layers.

    ``kind``: torch's RMSNorm, the (1 + weight) RMSNorm in float32, or LayerNorm with bias.
    ``placement``: before each sublayer (``pre``), on each sublayer's output inside the residual
    (``post``), or both (``sandwich``). ``eps_field`` names the config.json field of the epsilon.
    """

    kind: str = "rmsnorm"
    placement: str = "pre"
    eps_field: str = "rms_norm_eps"

    def __post_init__(self) -> None:
        _check_choice("Norm", "kind", self.kind, NORM_KINDS)
        _check_choice("Norm", "placement", self.placement, NORM_PLACEMENTS)


@dataclass(frozen=True)
class Biases:
    """Which linear layers have biases, and which config.json booleans switch them.

    ``fields``: the config's bias switches (``attention_bias``, ``mlp_bias``, ``use_bias``).
    ``qkv_only``: q/k/v always biased, the output projection never. ``everywhere``: every linear
    layer, with no switch. ``mlp_always``: the MLP is biased whatever the switches say.
    """

    fields: tuple[str, ...] = ("attention_bias", "mlp_bias")
    qkv_only: bool = False
    everywhere: bool = False
    mlp_always: bool = False


@dataclass(frozen=True)
class SlidingWindow:
    """Sliding-window attention: ``window`` tokens (the query included), or None where the
    config has the field but sets it to null (every layer attends fully).

    ``layout``: every layer slides (``all``), the layers from ``max_window_layers`` up slide
    (``from_max_window_layers``), or every ``pattern``-th layer attends fully and the others
    slide (``sliding_window_pattern``). What transformers assumes when config.json leaves the
    fields out is the recipe's ``ConfigFields``.
    """

    window: int | None
    layout: str = "all"
    max_window_layers: int | None = None
    pattern: int | None = None

    def __post_init__(self) -> None:
        _check_choice("SlidingWindow", "layout", self.layout, SLIDING_LAYOUTS)

    @property
    def active(self) -> bool:
        """Some layer slides."""
        return self.window is not None

    @property
    def per_layer(self) -> bool:
        """Some layers slide and others attend fully."""
        return self.active and self.layout != "all"


@dataclass(frozen=True)
class QKNorm:
    """RMSNorm on queries and keys before RoPE: over each head (``per_head``) or over the whole
    projection, all heads at once (``projection``)."""

    kind: str

    def __post_init__(self) -> None:
        _check_choice("QKNorm", "kind", self.kind, QK_NORM_KINDS)


@dataclass(frozen=True)
class Softcap:
    """``tanh`` soft-capping of attention scores and/or final logits (None: not capped).

    ``attention_field``: the config has an ``attn_logit_softcapping`` field at all (a family
    that never caps attention scores has none).
    """

    attention: float | None = None
    final: float | None = None
    attention_field: bool = True


@dataclass(frozen=True)
class Multipliers:
    """Scalar multipliers: token embeddings, each sublayer's output before its residual add,
    the softmax scale (instead of head_dim ** -0.5), and a divisor of the logits."""

    embedding: float
    residual: float
    attention: float
    logits: float


@dataclass(frozen=True)
class PartialRotary:
    """RoPE on the first ``int(head_dim * factor)`` channels of each head."""

    factor: float


@dataclass(frozen=True)
class LongRope:
    """LongRoPE: per-frequency short and long factors, switched at the pretraining length, and
    an attention factor on cos/sin."""

    short_factor: tuple[float, ...]
    long_factor: tuple[float, ...]
    attention_factor: float


@dataclass(frozen=True)
class LocalRope:
    """A second RoPE for the sliding (local) layers; the spec's ``rope`` is the global one."""

    type: str
    theta: float
    factor: float | None = None

    def __post_init__(self) -> None:
        _check_choice("LocalRope", "type", self.type, LOCAL_ROPE_TYPES)


@dataclass(frozen=True)
class Padding:
    """``pad_token_id`` as the embedding's ``padding_idx`` (that row gets no gradient); None
    where the config has no pad id (the family still builds the embedding with one)."""

    pad_token_id: int | None = None


@dataclass(frozen=True)
class FieldNames:
    """config.json names that differ between families (what ``ModelArgs.from_hf`` reads).

    ``derived_head_dims``: head_dim and the kv heads follow from hidden size and heads.
    The other fields' config.json names are the recipe's ``ConfigFields``.
    """

    activation: str = "hidden_act"
    derived_head_dims: bool = False


@dataclass(frozen=True)
class CheckpointLayout:
    """How transformers names (and lays out) this family's state dict; the default is Llama's.

    Keys are ``<prefix>.<embedding>.weight``, ``<prefix>.<blocks>.<i>.<attention>.<q_proj>...``,
    ``<prefix>.<final_norm>.weight`` and ``<lm_head>.weight`` (outside the prefix). ``positions``
    names the learned position table. The block's norms are named by where they sit:
    ``input_norm`` before attention, ``post_attention_norm`` after it (in a pre-norm block the
    norm before the MLP), ``pre_mlp_norm`` before the MLP of a block with both, and
    ``post_mlp_norm`` after the MLP. ``gate``, ``up`` and ``down`` name the MLP projections (a
    plain MLP has up and down only).

    ``fused_qkv``: one projection holds q, k and v, stacked along the output features in that
    order, or head after head when ``qkv_per_head``. ``fused_gate_up``: one projection stacks
    gate and up. ``conv1d``: modules (relative to a block) whose weights are stored transposed,
    ``[in, out]``. ``buffers``: non-parameter entries (relative to a block) some checkpoints
    carry. ``legacy_names``: (other key, checkpoint key) pairs ``from_hf`` also reads.
    ``hub_unprefixed``: some checkpoints leave the prefix out of their keys. ``float32``:
    endings of checkpoint keys that transformers keeps in float32 whatever the model's dtype
    (its ``_keep_in_fp32_modules_strict``); an HF export in bf16 or fp16 writes them in float32.
    """

    prefix: str = "model"
    embedding: str = "embed_tokens"
    positions: str | None = None
    blocks: str = "layers"
    final_norm: str = "norm"
    lm_head: str = "lm_head"
    attention: str = "self_attn"
    q_proj: str = "q_proj"
    k_proj: str = "k_proj"
    v_proj: str = "v_proj"
    o_proj: str = "o_proj"
    input_norm: str = "input_layernorm"
    post_attention_norm: str = "post_attention_layernorm"
    pre_mlp_norm: str = "pre_feedforward_layernorm"
    post_mlp_norm: str = "post_feedforward_layernorm"
    mlp: str = "mlp"
    gate: str = "gate_proj"
    up: str = "up_proj"
    down: str = "down_proj"
    fused_qkv: str | None = None
    qkv_per_head: bool = False
    fused_gate_up: str | None = None
    conv1d: tuple[str, ...] = ()
    buffers: tuple[str, ...] = ()
    legacy_names: tuple[tuple[str, str], ...] = ()
    hub_unprefixed: bool = False
    # The hub's checkpoints hold layers past num_hidden_layers (multi-token prediction modules,
    # num_nextn_predict_layers) that the model does not have: from_hf skips them.
    extra_layers: bool = False
    float32: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.qkv_per_head and (self.fused_qkv is None or self.fused_gate_up is not None):
            raise ScaffoldError(
                "CheckpointLayout.qkv_per_head needs fused_qkv, and no fused_gate_up"
            )


@dataclass(frozen=True)
class LatentAttention:
    """Multi-head latent attention (DeepSeek-V2/V3): keys and values come out of one shared
    low-rank latent.

    ``kv_lora_rank``: the latent's size (``kv_a_proj_with_mqa`` -> RMSNorm ``kv_a_layernorm``
    -> ``kv_b_proj``); ``q_lora_rank``: the queries' low-rank path (``q_a_proj`` -> RMSNorm
    ``q_a_layernorm`` -> ``q_b_proj``), None for one ``q_proj``. Each head's query and key are
    ``qk_nope_head_dim`` channels without positions then ``qk_rope_head_dim`` rotated ones (one
    rotated key shared by every head), its value ``v_head_dim`` channels. ``interleaved``: RoPE
    turns adjacent channel pairs (rope_interleave), else transformers' two halves.
    """

    q_lora_rank: int | None
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    interleaved: bool = True

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def params(self, dim: int, n_heads: int) -> int:
        """Parameters of one layer's attention (no biases)."""
        if self.q_lora_rank is None:
            q = dim * n_heads * self.qk_head_dim
        else:
            q = (
                dim * self.q_lora_rank
                + self.q_lora_rank
                + self.q_lora_rank * n_heads * self.qk_head_dim
            )
        kv = dim * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
        kv += self.kv_lora_rank * n_heads * (self.qk_nope_head_dim + self.v_head_dim)
        return q + kv + n_heads * self.v_head_dim * dim


@dataclass(frozen=True)
class GroupRouting:
    """DeepSeek's router (``gate``): ``scoring`` (sigmoid or softmax, in float32) of every
    expert's logit; with ``n_group`` groups, only the experts of the ``topk_group`` best groups
    compete for the top-k (a group's score: its best expert's score, or with ``top2`` the sum of
    its best two, after the selection bias); the chosen weights are renormalized when
    ``renormalize`` and multiplied by ``scaling_factor`` (routed_scaling_factor).
    ``bias_name``: the checkpoint's name of the selection bias (``e_score_correction_bias``), or
    None where the checkpoint has none. ``grouped`` False: plain top-k over every expert (no
    groups). ``method``: the config's ``topk_method`` where the family reads one.
    """

    scoring: str
    n_group: int
    topk_group: int
    scaling_factor: float
    top2: bool = False
    bias_name: str | None = None
    grouped: bool = True
    method: str | None = None

    def __post_init__(self) -> None:
        _check_choice("GroupRouting", "scoring", self.scoring, GROUP_SCORINGS)


@dataclass(frozen=True)
class MoeLayout:
    """How the checkpoint names a sparse block's tensors (relative to the block).

    ``module``: the mixture's module (``mlp``, ``block_sparse_moe``); ``router``: its router's
    linear layer (``gate``, ``router.layer``). Experts are per-expert modules ``experts.<j>``
    with projections ``gate``, ``up`` and ``down``, unless ``fused_input`` / ``fused_output``
    name stacked tensors: ``[experts, 2 * ffn, dim]`` with each expert's gate rows then its up
    rows, and ``[experts, dim, ffn]``. ``shared_expert`` and ``shared_gate`` name the shared
    expert's MLP and its sigmoid gate.
    """

    module: str = "mlp"
    router: str = "gate"
    gate: str = "gate_proj"
    up: str = "up_proj"
    down: str = "down_proj"
    fused_input: str | None = None
    fused_output: str | None = None
    shared_expert: str = "shared_expert"
    shared_gate: str | None = "shared_expert_gate"
    # Experts stacked as transformers keeps them in memory, under ``experts.`` without a
    # ``.weight``: ``fused_input`` ``[experts, dim, 2 * ffn]`` with gate and up interleaved
    # column by column, ``fused_output`` ``[experts, ffn, dim]`` (both the transposes of ours),
    # and their biases as ``<name>_bias``.
    interleaved: bool = False
    # The hub's files store the stacked expert weights as MXFP4 ``<name>_blocks`` /
    # ``<name>_scales`` pairs, ``[experts, out, in]`` (quantized along the input features).
    mxfp4: bool = False

    def __post_init__(self) -> None:
        if (self.fused_input is None) != (self.fused_output is None):
            raise ScaffoldError("MoeLayout: fused_input and fused_output go together")


@dataclass(frozen=True)
class Moe:
    """Mixture-of-experts MLPs: ``num_experts`` SwiGLU experts of ``ffn_dim`` hidden units each,
    ``top_k`` of them per token, chosen by a linear router.

    ``routing``: ``softmax_topk`` takes the top_k of the softmax over every expert's logit (in
    float32), renormalized to sum to one when ``renormalize``; ``topk_softmax`` takes the top_k
    logits and a softmax over those (the renormalized probabilities, computed in that order).
    ``shared_ffn_dim``: a shared expert every token passes through (None: none), its output
    scaled by a sigmoid gate. Layer ``i`` is sparse unless it is in ``mlp_only_layers`` or
    ``(i + 1) % sparse_step`` is not 0; the others have a dense MLP of the spec's ``ffn_dim``
    (``sparse_step`` None: the family has no such fields and every layer is sparse).
    ``aux_loss_coef``: router_aux_loss_coef, the weight of the load-balancing loss.
    ``experts_field`` / ``ffn_field`` / ``renormalize_field``: the config.json names of the
    expert count, the expert size and the renormalization switch (None: no such field, the
    family always renormalizes or never does).
    """

    num_experts: int
    top_k: int
    ffn_dim: int
    aux_loss_coef: float
    routing: str = "softmax_topk"
    renormalize: bool = False
    shared_ffn_dim: int | None = None
    sparse_step: int | None = None
    mlp_only_layers: tuple[int, ...] = ()
    experts_field: str = "num_experts"
    ffn_field: str = "moe_intermediate_size"
    renormalize_field: str | None = "norm_topk_prob"
    layout: MoeLayout = field(default_factory=MoeLayout)
    # DeepSeek: the first ``first_dense`` layers (first_k_dense_replace) have a dense MLP,
    # ``group_routing`` replaces ``routing``, the shared experts' field and balancing default.
    first_dense: int | None = None
    group_routing: GroupRouting | None = None
    shared_field: str = "shared_expert_intermediate_size"
    balancing: str = "aux_loss"
    # Biases on the router's logits and on each expert's gate, up and down projections.
    router_bias: bool = False
    expert_biases: bool = False
    # The experts' activation: ``swiglu`` (silu(gate) * up) or ``clamped_swiglu``: gate clamped
    # above and up on both sides at ``swiglu_limit``, ``(up + 1) * gate * sigmoid(swiglu_alpha *
    # gate)``.
    activation: str = "swiglu"
    swiglu_limit: float | None = None
    swiglu_alpha: float | None = None

    def __post_init__(self) -> None:
        _check_choice("Moe", "routing", self.routing, MOE_ROUTINGS)
        _check_choice("Moe", "activation", self.activation, EXPERT_ACTIVATIONS)
        if (self.activation == "clamped_swiglu") != (self.swiglu_limit is not None):
            raise ScaffoldError("Moe: clamped_swiglu goes with swiglu_limit and swiglu_alpha")
        if not 1 <= self.top_k <= self.num_experts:
            raise ScaffoldError(f"Moe: top_k {self.top_k} not in 1..{self.num_experts}")

    def is_sparse(self, layer_id: int) -> bool:
        """Whether layer ``layer_id`` routes through the experts."""
        if self.first_dense is not None:
            return layer_id >= self.first_dense
        if self.sparse_step is None:
            return True
        return layer_id not in self.mlp_only_layers and (layer_id + 1) % self.sparse_step == 0

    def sparse_layers(self, n_layers: int) -> int:
        return sum(self.is_sparse(i) for i in range(n_layers))

    def has_dense_layers(self, n_layers: int) -> bool:
        """Some layer has a dense MLP instead of experts."""
        return self.sparse_layers(n_layers) < n_layers

    @property
    def expert_ffn_arg(self) -> str:
        """The ModelArgs field of the experts' hidden size: ``ffn_dim`` where the config's
        intermediate_size is the experts' size (no dense MLP has its own), else ``moe_ffn_dim``."""
        return "ffn_dim" if self.ffn_field == "intermediate_size" else "moe_ffn_dim"


@dataclass(frozen=True)
class Features:
    """Everything a family adds to the common dimensions; see each type for its meaning.

    Plain fields: ``gated_mlp`` (gate, up and down projections; False: up and down only),
    ``scale_embeddings`` (embeddings times sqrt(hidden_size)),
    ``query_pre_attn_scalar`` (scores scale by its -1/2 power), ``scale_attn_weights`` (False:
    scores are not scaled), ``learned_positions`` (a position table instead of RoPE),
    ``parallel_residual`` (attention and MLP both read the block input), ``checkpoint`` (the
    checkpoint's key names and fused tensors), ``longrope_aliases`` (old rope type names the
    config class reads as ``longrope``), ``partial_rotary_field`` (the config class has a
    partial-rotary field), ``attention_dropout`` (dropped in training, as transformers does)
    and ``unapplied_dropout`` (the config's dropouts the package does not apply, by field).
    ``moe``: mixture-of-experts MLPs (None: every layer's MLP is dense).
    """

    norm: Norm = field(default_factory=Norm)
    biases: Biases = field(default_factory=Biases)
    names: FieldNames = field(default_factory=FieldNames)
    sliding_window: SlidingWindow | None = None
    qk_norm: QKNorm | None = None
    softcap: Softcap | None = None
    multipliers: Multipliers | None = None
    partial_rotary: PartialRotary | None = None
    longrope: LongRope | None = None
    local_rope: LocalRope | None = None
    padding: Padding | None = None
    gated_mlp: bool = True
    scale_embeddings: bool = False
    query_pre_attn_scalar: int | None = None
    scale_attn_weights: bool = True
    learned_positions: bool = False
    parallel_residual: bool = False
    checkpoint: CheckpointLayout = field(default_factory=CheckpointLayout)
    longrope_aliases: tuple[str, ...] = ()
    partial_rotary_field: bool = False
    moe: Moe | None = None
    latent_attention: LatentAttention | None = None
    attention_dropout: float | None = None
    unapplied_dropout: tuple[tuple[str, float], ...] = ()
    # One learned logit per query head joined to each softmax (a "sink" that takes probability
    # mass and contributes no value).
    attention_sinks: bool = False

    @property
    def mlp_names(self) -> str:
        """The checkpoint's MLP projections, e.g. ``gate_proj, up_proj, down_proj``."""
        layout = self.checkpoint
        names = (
            (layout.gate, layout.up, layout.down) if self.gated_mlp else (layout.up, layout.down)
        )
        return ", ".join(names)

    @property
    def fused_checkpoint(self) -> bool:
        """The checkpoint stacks q/k/v and gate/up in one projection each."""
        return self.checkpoint.fused_qkv is not None and self.checkpoint.fused_gate_up is not None

    @property
    def legacy_checkpoint_keys(self) -> bool:
        """Some checkpoints name keys otherwise or carry buffers: ``from_hf`` reads them too."""
        c = self.checkpoint
        return bool(c.buffers or c.legacy_names or c.hub_unprefixed)

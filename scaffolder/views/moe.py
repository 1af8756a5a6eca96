"""The experts area: what ``model/moe.py`` prints (mixture-of-experts packages only).

Router, grouped experts, token dispatcher, shared expert and the load-balancing loss: the code
is the same for every mixture; the docstrings name the family's config.json fields and
numbers, and the router's scoring is one of the parts under ``parts/moe/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaffolder.errors import ScaffoldError
from scaffolder.features import GroupRouting, Moe
from scaffolder.spec import ArchSpec


@dataclass(frozen=True)
class MoeView:
    overview: tuple[str, ...]  # the module docstring's sentences
    routing: str  # parts/moe/<routing>.py.j2: the router's scores, choice and weights
    router_doc: str
    experts_doc: str
    shared: bool  # a shared expert with its sigmoid gate
    shared_doc: str
    moe_doc: str
    ffn_arg: str  # the ModelArgs field of each expert's hidden size
    aux_doc: str
    first_sparse: str  # the debug flavor's first layer with experts (the generated tests')
    # The router's extra constructor parameters, their lines in __init__, and MoE's arguments.
    router_params: str = ""
    router_init: tuple[str, ...] = ()
    router_args: str = ""
    shared_dim: str = "model_args.shared_ffn_dim"  # the shared expert's hidden size
    shared_gate: bool = True  # the shared expert's output is scaled by a sigmoid gate
    aux_test: bool = True  # transformers computes the load-balancing loss (the generated test)
    weight_bound: str = "1"  # the largest router weight (the generated test)
    router_bias: bool = False  # the router's linear layer has a bias
    # Biased experts (parts/moe/experts_*_biased.py.j2): GroupedExperts' extra parameters and
    # attributes, what MoE passes for them, and its activation(gate, up).
    expert_biases: bool = False
    experts_params: str = ""
    experts_attributes: tuple[str, ...] = ()
    experts_args: str = ""
    activation_doc: str = ""
    activation_lines: tuple[str, ...] = ()


def _routing(moe: Moe) -> str:
    if moe.group_routing is not None and not moe.group_routing.grouped:
        return "softmax_topk_scaled"
    if moe.group_routing is not None:
        return f"group_{moe.group_routing.scoring}"
    if moe.routing == "topk_softmax":
        return "topk_softmax"
    return "softmax_topk_renormalized" if moe.renormalize else "softmax_topk"


def _router_doc(moe: Moe) -> str:
    name = moe.layout.router
    routing = moe.group_routing
    if routing is not None:
        return _group_router_doc(moe, routing)
    if moe.routing == "topk_softmax":
        scoring = (
            "The weights are a softmax over the chosen experts' logits (in float32), which "
            "sum to one."
        )
    elif moe.renormalize:
        how = f" ({moe.renormalize_field})" if moe.renormalize_field else ""
        scoring = (
            "Scores are a softmax over every expert's logit, in float32; the chosen experts' "
            f"scores are renormalized to sum to one{how}."
        )
    else:
        scoring = (
            "Scores are a softmax over every expert's logit, in float32; the chosen experts "
            f"keep their scores as weights ({moe.renormalize_field} false: they sum to less than "
            "one)."
        )
    bias = " Its logits have a learned bias (``router.bias``)." if moe.router_bias else ""
    return (
        f"Top-k router (``{name}`` in transformers).\n\n"
        f"Each token goes to the top_k (num_experts_per_tok) of num_experts experts.{bias}\n"
        f"{scoring}"
    )


def _biased_experts(moe: Moe) -> dict[str, object]:
    """MoeView's fields for experts with biases (and their activation)."""
    if not moe.expert_biases:
        if moe.activation != "swiglu":
            raise ScaffoldError("model/moe.py: a clamped SwiGLU needs the biased experts")
        return {}
    if moe.activation == "swiglu":
        return dict(
            expert_biases=True,
            activation_doc="SwiGLU: ``silu(gate) * up``.",
            activation_lines=("return F.silu(gate) * up",),
        )
    return dict(
        expert_biases=True,
        experts_params=", limit: float, alpha: float",
        experts_attributes=(
            "self.limit = limit  # swiglu_limit",
            "self.alpha = alpha  # swiglu_alpha",
        ),
        experts_args=", model_args.swiglu_limit, model_args.swiglu_alpha",
        activation_doc=(
            "The clamped SwiGLU: ``(up + 1) * gate * sigmoid(alpha * gate)``.\n\n"
            f"gate is clamped above at ``limit`` (swiglu_limit, {moe.swiglu_limit}) and up to "
            f"``[-limit, limit]``; alpha is swiglu_alpha ({moe.swiglu_alpha}).\n"
            "transformers' checkpoints interleave gate and up column by column in "
            "``gate_up_proj``; the state-dict adapter splits them into w1 and w3."
        ),
        activation_lines=(
            "gate = gate.clamp(max=self.limit)",
            "up = up.clamp(min=-self.limit, max=self.limit)",
            "return (up + 1) * (gate * torch.sigmoid(gate * self.alpha))",
        ),
    )


def _group_router_doc(moe: Moe, routing: GroupRouting) -> str:
    if not routing.grouped:
        return (
            f"Top-k router (``{moe.layout.router}`` in transformers; topk_method greedy).\n\n"
            "Scores are a softmax over every expert's logit, in float32; each token goes to its "
            "top_k (num_experts_per_tok) experts, whose scores, not renormalized, are multiplied "
            "by routed_scaling_factor."
        )
    scores = (
        "Scores are the sigmoid of each expert's logit, in float32."
        if routing.scoring == "sigmoid"
        else "Scores are a softmax over every expert's logit, in float32."
    )
    group = "the sum of its two best" if routing.top2 else "its best"
    bias = (
        f"``expert_bias`` ({routing.bias_name} in transformers' checkpoints) is added to the "
        "scores to choose groups and experts, never to the weights."
        if routing.bias_name
        else "``expert_bias`` (all zeros unless training updates it) is added to the scores to "
        "choose groups and experts, never to the weights."
    )
    renormalized = (
        "The chosen experts' scores are renormalized to sum to one (norm_topk_prob), then "
        if moe.renormalize
        else "The chosen experts' scores, not renormalized, are "
    )
    return (
        f"Group-limited top-k router (``{moe.layout.router}`` in transformers).\n\n"
        f"{scores}\n"
        f"The {moe.num_experts} experts form n_group groups; a group scores {group} experts' "
        "scores, and each token chooses its top_k (num_experts_per_tok) experts among the "
        "topk_group best groups.\n"
        f"{bias}\n"
        f"{renormalized}multiplied by routed_scaling_factor."
    )


def moe_view(spec: ArchSpec) -> MoeView | None:
    moe = spec.features.moe
    if moe is None:
        return None
    layout = moe.layout
    sparse = moe.sparse_layers(spec.n_layers)
    where = (
        "every layer"
        if sparse == spec.n_layers
        else f"{sparse} of the {spec.n_layers} layers (decoder_sparse_step, mlp_only_layers)"
    )
    if moe.first_dense is not None:
        where = (
            f"layers {moe.first_dense} and up (the layers below have a dense MLP, "
            "first_k_dense_replace)"
        )
    mlps = "SwiGLU MLPs" if moe.activation == "swiglu" else "clamped SwiGLU MLPs with biases"
    overview = [
        f"In {where}, each token goes to {moe.top_k} of {moe.num_experts} experts "
        f"(num_experts_per_tok of {moe.experts_field}), {mlps} of {moe.ffn_dim} hidden "
        f"units ({moe.ffn_field}).",
    ]
    gated = moe.layout.shared_gate is not None
    if moe.shared_ffn_dim is not None and not gated:
        overview.append(
            f"A shared expert of {moe.shared_ffn_dim} hidden units (n_shared_experts * "
            f"{moe.ffn_field}) sees every token."
        )
    elif moe.shared_ffn_dim is not None:
        overview.append(
            f"A shared expert of {moe.shared_ffn_dim} hidden units "
            "(shared_expert_intermediate_size) sees every token, gated by a sigmoid."
        )
    if layout.interleaved:
        stored = (
            f"transformers' checkpoints hold them stacked and transposed, ``{layout.fused_input}`` "
            "``[experts, dim, 2 * hidden_dim]`` with gate and up interleaved column by column, "
            f"and ``{layout.fused_output}``"
        )
    elif layout.fused_input is not None:
        stored = (
            f"transformers' checkpoints hold them the same way, as ``{layout.fused_input}`` "
            f"(w1 and w3 stacked) and ``{layout.fused_output}``"
        )
    else:
        stored = (
            f"transformers' checkpoints hold one ``experts.<j>.{layout.gate}``, "
            f"``{layout.up}`` and ``{layout.down}`` per expert"
        )
    what = "SwiGLU weights"
    biases = ""
    if moe.expert_biases:
        what = "weights and biases"
        biases = " ``b1`` and ``b3`` ``[experts, hidden_dim]``, ``b2`` ``[experts, dim]``."
    experts_doc = (
        f"The experts' {what}, stacked by expert.\n\n"
        "``w1`` and ``w3`` are ``[experts, hidden_dim, dim]``, "
        f"``w2`` ``[experts, dim, hidden_dim]`` ({stored}).{biases}\n\n"
        "``torch._grouped_mm`` multiplies every expert's rows at once where it applies (see "
        ":func:`grouped_mm_applies`); otherwise, or with ``use_grouped_mm`` off, a loop over the "
        "experts computes the same values."
    )
    moe_doc_lines = [
        f"Mixture of experts (``{layout.module}`` in transformers): route, dispatch, compute, "
        "combine.",
        "",
        "Each token's output is the sum of its chosen experts' outputs times their router weights"
        + (
            ", plus the shared expert's output times sigmoid(shared_expert_gate(x))."
            if moe.shared_ffn_dim is not None and gated
            else ", plus the shared expert's output."
            if moe.shared_ffn_dim is not None
            else "."
        ),
        "In training it records its routing: ``tokens_per_expert`` (for the expert-bias update "
        "and the load statistics) and what :func:`load_balancing_loss` needs.",
    ]
    aux_doc = (
        "transformers' load-balancing loss over ``layers``' last training forward.\n\n"
        "As transformers' load_balancing_loss_func: the fraction of routed rows per expert and "
        "the mean router probability per expert, both over all the layers' tokens together, "
        "multiplied and summed, times the number of experts (one for perfectly even routing). "
        f"The trainer adds it times router_aux_loss_coef ({moe.aux_loss_coef}) to the loss."
    )
    return MoeView(
        overview=tuple(overview),
        routing=_routing(moe),
        router_doc=_router_doc(moe),
        experts_doc=experts_doc,
        shared=moe.shared_ffn_dim is not None,
        shared_doc=(
            f"The shared expert (``{moe.layout.shared_expert}`` in transformers).\n\n"
            "A SwiGLU MLP every token passes through."
        ),
        moe_doc="\n".join(moe_doc_lines),
        ffn_arg=moe.expert_ffn_arg,
        aux_doc=aux_doc,
        first_sparse=_first_sparse(spec),
        router_bias=moe.router_bias,
        **_biased_experts(moe),
        **_group_fields(moe),
    )


def _group_fields(moe: Moe) -> dict[str, object]:
    """MoeView's fields for DeepSeek's group-limited router and gate-less shared experts."""
    if moe.group_routing is None:
        return {}
    grouped = moe.group_routing.grouped
    return dict(
        router_params=", n_group: int, topk_group: int, routed_scaling_factor: float"
        if grouped
        else ", routed_scaling_factor: float",
        router_init=(
            *(("self.n_group = n_group", "self.topk_group = topk_group") if grouped else ()),
            "self.routed_scaling_factor = routed_scaling_factor",
        ),
        router_args=", model_args.n_group, model_args.topk_group, model_args.routed_scaling_factor"
        if grouped
        else ", model_args.routed_scaling_factor",
        shared_dim="model_args.n_shared_experts * model_args.moe_ffn_dim",
        shared_gate=moe.layout.shared_gate is not None,
        aux_test=False,
        weight_bound="debug_args.routed_scaling_factor",
    )


def _first_sparse(spec: ArchSpec) -> str:
    """The debug flavor's first layer with experts, as ``model.layers``' key."""
    debug = spec.debug_dims()
    if "first_k_dense_replace" in debug:
        return str(debug["first_k_dense_replace"])
    step = debug.get("decoder_sparse_step", 1)
    only = debug.get("mlp_only_layers", ())
    layer = next(i for i in range(debug["n_layers"]) if i not in only and (i + 1) % step == 0)
    return str(layer)

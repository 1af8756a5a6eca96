"""What the generated tests/test_megatron_yaml.py expects of the package's resolved YAML."""

from __future__ import annotations

from dataclasses import dataclass

from scaffolder.spec import ArchSpec


@dataclass(frozen=True)
class MegatronTestView:
    """What the generated tests/test_megatron_yaml.py expects of the resolved YAML.

    Expectations are Python expressions over the test's ``ARCHITECTURE`` (the config's bias
    switches) and ``args`` (``ModelArgs.from_hf`` of the package's config.json), chosen here so
    that the generated test has no branch on a value fixed at generation.
    """

    qkv_bias: str  # add_qkv_bias
    mlp_bias: str  # add_bias_linear
    attention_bias: str  # what Megatron's add_bias_linear means for the attention projections
    normalization: str
    swiglu: bool
    rope_scaling: tuple[tuple[str, str], ...]  # (preset key, expected expression)
    runtime_rope_type: str | None  # what megatron_to_runtime reads back (None: no rope)
    kv_channels: str = "args.head_dim"  # kv_channels' expected expression
    # ModelArgs fields megatron_to_runtime reads back
    runtime_fields: tuple[str, ...] = (
        "vocab_size",
        "dim",
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "head_dim",
        "ffn_dim",
        "max_seq_len",
        "norm_eps",
    )

    @property
    def mlp_bias_test(self) -> str:
        """``is True`` / ``== <expression>``: how the test compares the MLP bias."""
        return _compare(self.mlp_bias)

    @property
    def attention_bias_test(self) -> str:
        return _compare(self.attention_bias)


def _compare(expression: str) -> str:
    return f"is {expression}" if expression in ("True", "False") else f"== {expression}"


def megatron_test_view(spec: ArchSpec) -> MegatronTestView:
    f = spec.features
    fields = f.biases.fields
    if "use_bias" in fields:
        qkv = mlp = 'ARCHITECTURE["use_bias"]'
    elif f.biases.everywhere:
        qkv = mlp = "True"
    else:
        qkv = 'ARCHITECTURE["attention_bias"]' if "attention_bias" in fields else "False"
        if f.biases.qkv_only:
            qkv = "True"
        mlp = 'ARCHITECTURE["mlp_bias"]' if "mlp_bias" in fields else "False"
        if f.biases.mlp_always:
            mlp = "True"
    moe = f.moe
    if moe is not None and moe.expert_biases and not moe.has_dense_layers(spec.n_layers):
        mlp = "True"  # add_bias_linear: the experts' biases
    if "True" in (qkv, mlp):
        attention = "True"
    elif mlp == "False":
        attention = qkv
    elif qkv == "False" or qkv == mlp:
        attention = mlp
    else:
        attention = f"({qkv} or {mlp})"
    rope = spec.rope
    scaling: tuple[tuple[str, str], ...] = ()
    runtime_rope_type = None
    if rope is not None:
        # Megatron's only rope scaling: Llama 3's bands with its fixed factors (the YAML says
        # when the config's differ); linear, dynamic and LongRoPE scaling are not expressible.
        scaling = (("use_rope_scaling", "True" if rope.type == "llama3" else "False"),)
        runtime_rope_type = "llama3" if rope.type == "llama3" else "default"
    return MegatronTestView(
        qkv_bias=qkv,
        mlp_bias=mlp,
        attention_bias=attention,
        normalization="LayerNorm" if f.norm.kind == "layernorm" else "RMSNorm",
        # The experts' clamped SwiGLU is Megatron's quick GeGLU instead.
        swiglu=f.gated_mlp and (moe is None or moe.activation == "swiglu"),
        rope_scaling=scaling,
        runtime_rope_type=runtime_rope_type,
        **(
            {}
            if f.latent_attention is None
            else {
                "kv_channels": "args.v_head_dim",
                "runtime_fields": (
                    "vocab_size",
                    "dim",
                    "n_layers",
                    "n_heads",
                    "n_kv_heads",
                    "ffn_dim",
                    "max_seq_len",
                    "norm_eps",
                ),
            }
        ),
    )

"""What the generated tests/test_args.py checks of ModelArgs, chosen from the spec so that the
test has no branch on a value fixed at generation."""

from __future__ import annotations

from dataclasses import dataclass

from scaffolder.spec import ArchSpec


@dataclass(frozen=True)
class ArgsTestView:
    """``rope_styles``: how the config class's old-style rope fields are checked against
    ``rope_parameters`` -- ``flat`` (top-level theta and rope_scaling), ``per_layer_type``
    (Gemma-3-style, with the local base and the layer pattern), ``per_layer_type_scaled`` (only
    the new style exists) or ``none`` (no RoPE: the config's own size names instead)."""

    rope_styles: str
    theta_field: str  # the old-style name of rope_theta
    partial_field: str | None  # the old-style name of partial_rotary_factor, if the class has one
    rope_scaled: bool  # the full-size config scales its rope (old style: a rope_scaling object)
    dim_field: str  # config.json's name of the hidden size
    zeroed: tuple[str, ...]  # dropouts to_hf states as 0
    sliding_refusal: str | None  # "max_window_layers" or "window"; None: no window field at all
    slides: bool  # the config's model slides (its refusal test turns the window off)
    partial_refusal: bool  # the config class has a partial-rotary field the package fixes
    partial: bool  # this model rotates part of each head


def args_test_view(spec: ArchSpec) -> ArgsTestView:
    f = spec.features
    fields = spec.config_fields
    if spec.rope is None:
        styles = "none"
    elif f.local_rope is not None:
        styles = "per_layer_type" if f.local_rope.type == "default" else "per_layer_type_scaled"
    else:
        styles = "flat"
    sliding = f.sliding_window
    if sliding is None:
        refusal = None
    else:
        refusal = "max_window_layers" if sliding.layout == "from_max_window_layers" else "window"
    return ArgsTestView(
        rope_styles=styles,
        theta_field=fields.name("rope_theta"),
        partial_field=fields.name("partial_rotary_factor") if f.partial_rotary_field else None,
        rope_scaled=spec.rope is not None and spec.rope.type != "default",
        dim_field=fields.name("dim"),
        zeroed=fields.zeroed,
        sliding_refusal=refusal,
        slides=sliding is not None and sliding.active,
        partial_refusal=f.partial_rotary_field,
        partial=f.partial_rotary is not None,
    )

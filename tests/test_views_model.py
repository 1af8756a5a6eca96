"""The model area's views: model.py's parts exist, and its overview names only its own model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from scaffolder.families import build_spec
from scaffolder.views.model import ModelView, model_view
from tests.helpers import FAMILY_CONFIGS, family_config, tinyllama_config

CONFIGS = sorted(path.stem for path in FAMILY_CONFIGS.glob("*.json"))
FAMILY_WORDS = re.compile(
    r"llama|gemma|gpt|neox|starcoder|qwen|mistral|olmo|phi\d|granite", re.IGNORECASE
)
PARTS = (
    Path(__file__).resolve().parent.parent
    / "templates"
    / "package"
    / "templates"
    / "parts"
    / "model"
)


@pytest.mark.parametrize("name", CONFIGS)
def test_overview_names_only_its_own_model(name: str) -> None:
    spec = build_spec(family_config(name))
    view = model_view(spec)
    text = "\n".join(view.overview)
    own = spec.hf_architecture.lower()
    others = [word for word in FAMILY_WORDS.findall(text) if word.lower() not in own]
    assert others == [], others
    for part in included_parts(view):
        assert (PARTS / f"{part}.py.j2").is_file(), part


def included_parts(view: ModelView) -> tuple[str, ...]:
    """Every part the model.py template and its parts include for ``view``."""
    a, t = view.attention, view.transformer
    return (
        *view.parts,
        *a.window,
        *a.attributes,
        *a.qk_norms,
        *a.init_weights,
        *a.positions,
        *a.repeat_kv,
        *a.mask,
        *view.feed_forward.init_weights,
        *view.block.attributes,
        *((view.rope.inv_freq_part, view.rope.cache_part, view.rope.rotate) if view.rope else ()),
        *(view.latent.rope_rows if view.latent else ()),
        t.tok_embeddings,
        t.output_init,
        t.embed,
        t.layers,
        t.logits,
    )


def test_line_parts_end_without_a_newline() -> None:
    """A part written at a function body's indentation stands in for its lines where it is
    included, so it ends without a newline (the template's line break follows the include)."""
    for path in sorted(PARTS.glob("*.py.j2")):
        text = path.read_text()
        if text.startswith(" "):
            assert not text.endswith("\n"), path.name


def test_llama_overview_and_attention() -> None:
    view = model_view(build_spec(tinyllama_config()))
    assert view.overview[0].startswith("Architecture (LlamaForCausalLM): 22 pre-norm blocks.")
    assert "32 query heads sharing 4 key/value heads" in view.overview[1]
    assert view.attention.sdpa_kwargs == ("is_causal=True", "enable_gqa=True")
    assert view.block.new == "TransformerBlock(model_args)"
    assert view.parts == (
        "rope",
        "attention",
        "feed_forward_swiglu",
        "block_pre_norm",
        "transformer",
    )

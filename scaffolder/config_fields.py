"""The config.json side of the generated ``ModelArgs``: how a family's transformers config class
names the fields ``ModelArgs`` reads and what it assumes when config.json leaves one out.

A recipe states one :class:`ConfigFields`; ``scaffolder/views/args.py`` turns it and the spec's
features into the rows of ``ModelArgs``, ``from_hf``, ``to_hf`` and ``check_architecture``.
``tests/test_args_view.py`` checks every stated default against transformers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# The config.json name of each ModelArgs field, where a family does not rename it. Rope fields
# name the old-style top-level field (new style: the same key inside ``rope_parameters``).
LLAMA_NAMES: Mapping[str, str] = {
    "dim": "hidden_size",
    "n_layers": "num_hidden_layers",
    "n_heads": "num_attention_heads",
    "n_kv_heads": "num_key_value_heads",
    "ffn_dim": "intermediate_size",
    "max_seq_len": "max_position_embeddings",
    "rope_local_theta": "rope_local_base_freq",
    "rope_original_max_seq_len": "original_max_position_embeddings",
}
# Fields every family's config.json must state (transformers' defaults describe some 7B model).
REQUIRED = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
)


@dataclass(frozen=True)
class ConfigFields:
    """How a family's config class names and defaults the fields ``ModelArgs`` reads.

    ``names``: ModelArgs field -> config.json field where the family's name is not in
    :data:`LLAMA_NAMES` (``dim`` -> ``n_embd``). ``defaults``: config.json field -> the config
    class's value when config.json leaves it out; ``required`` fields have none. ``implied``:
    what the config class assumes with no field to change it (Gemma 2: every 2nd layer attends
    fully, ``sliding_window_pattern`` 2). ``activation_aliases``: old activation names the config
    class reads as the spec's ``hidden_act``. ``switches``: config.json booleans this package's
    code fixes, with its value. ``zeroed``: dropouts the package does not apply whose default is
    not 0, so ``to_hf`` states them as 0. ``rope_default``: the rope settings (rope_theta aside)
    the config class assumes when config.json has neither rope_parameters nor rope_scaling, where
    that is not plain rope (GptOssConfig: YaRN).
    """

    defaults: Mapping[str, Any]
    required: tuple[str, ...] = REQUIRED
    names: Mapping[str, str] = field(default_factory=dict)
    implied: Mapping[str, Any] = field(default_factory=dict)
    activation_aliases: tuple[str, ...] = ()
    switches: Mapping[str, bool] = field(default_factory=dict)
    zeroed: tuple[str, ...] = ()
    rope_default: Mapping[str, Any] = field(default_factory=dict)

    def name(self, arg: str) -> str:
        """The config.json field of ModelArgs field ``arg``."""
        return self.names.get(arg) or LLAMA_NAMES.get(arg, arg)

    def is_required(self, name: str) -> bool:
        """Whether config.json must state field ``name`` (else the config class defaults it)."""
        if name in self.required:
            return True
        if name not in self.defaults:
            raise KeyError(f"config field {name!r} has neither a stated default nor is required")
        return False

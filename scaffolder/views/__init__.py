"""View objects: what the templates print, computed in Python from the spec.

Each module here turns an :class:`~scaffolder.spec.ArchSpec` into small frozen objects for one
area of the package (docstring lines, constructor arguments, module lists); templates read them
straight through as ``cookiecutter.views.<area>``.
"""

from __future__ import annotations

from typing import Any

from scaffolder.spec import ArchSpec
from scaffolder.views.adapter import adapter_view
from scaffolder.views.args import args_view
from scaffolder.views.args_test import args_test_view
from scaffolder.views.infra import infra_view
from scaffolder.views.megatron import megatron_view
from scaffolder.views.megatron_test import megatron_test_view
from scaffolder.views.model import model_view
from scaffolder.views.moe import moe_view
from scaffolder.views.readme import architecture_rows, training_view
from scaffolder.views.torchtitan import torchtitan_view


def build_views(spec: ArchSpec, package_name: str) -> dict[str, Any]:
    """Every area's view of ``spec`` (rendered as ``package_name``), keyed by area."""
    return {
        "adapter": adapter_view(spec),
        "args": args_view(spec),
        "args_test": args_test_view(spec),
        "infra": infra_view(spec),
        "megatron": megatron_view(spec),
        "megatron_test": megatron_test_view(spec),
        "model": model_view(spec),
        "moe": moe_view(spec),
        "readme": architecture_rows(spec),
        "training": training_view(spec),
        "torchtitan": torchtitan_view(spec, package_name),
    }

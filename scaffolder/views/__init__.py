"""View objects: what the templates print, computed in Python from the spec.

Each module here turns an :class:`~scaffolder.spec.ArchSpec` into small frozen objects for one
area of the package (docstring lines, constructor arguments, module lists); templates read them
straight through as ``cookiecutter.views.<area>``.
"""

from __future__ import annotations

from typing import Any

from scaffolder.spec import ArchSpec
from scaffolder.views.args import args_view


def build_views(spec: ArchSpec) -> dict[str, Any]:
    """Every area's view of ``spec``, keyed by area."""
    return {"args": args_view(spec)}

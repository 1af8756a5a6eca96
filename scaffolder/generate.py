"""One pass of the pipeline: source -> spec -> rendered files (in memory)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scaffolder.families import build_spec
from scaffolder.record import record_files
from scaffolder.render import SourceInfo, render_package
from scaffolder.source import (
    ResolvedSource,
    package_name_from_source,
    resolve_source,
    validate_package_name,
)
from scaffolder.spec import ArchSpec
from scaffolder.views.megatron import megatron_view

_PROVENANCE = {
    "local": "a local file",
    "hf-cache": "the Hugging Face cache",
    "hub": "the Hugging Face Hub",
    "bundled": "the config.json snapshot bundled with model-scaffolder",
}


@dataclass(frozen=True)
class Generated:
    """A rendered package, not yet written anywhere."""

    package_name: str
    resolved: ResolvedSource
    spec: ArchSpec
    files: dict[str, str]
    requested_revision: str | None = None

    @property
    def warnings(self) -> tuple[str, ...]:
        """What the package cannot carry over from the config, then what its Megatron YAML
        cannot express (the YAML's NOT EXPRESSIBLE notes)."""
        megatron = megatron_view(self.spec).not_expressible
        return self.spec.warnings + tuple(f"Megatron YAML: {note}" for note in megatron)

    def files_with_record(self, package_dir: Path | None = None) -> dict[str, str]:
        """The rendered files plus the ``.scaffold/`` regeneration record, ready to write.

        ``package_dir`` is the folder the package goes to: a local config's path is recorded
        relative to it (absolute without it).
        """
        record = record_files(
            self.resolved,
            self.spec,
            self.package_name,
            self.files,
            requested_revision=self.requested_revision,
            package_dir=package_dir,
        )
        return {**self.files, **record}


def source_info(resolved: ResolvedSource) -> SourceInfo:
    """Provenance for the README: the repo id and where the config was read, never raw paths."""
    where = _PROVENANCE[resolved.kind]
    description = f"{resolved.repo_id}, from {where}" if resolved.repo_id else f"{where}"
    return SourceInfo(
        description=description,
        repo_id=resolved.repo_id,
        revision=resolved.revision,
        config_sha256=resolved.sha256,
        config_text=json.dumps(resolved.config, indent=2) + "\n",
    )


def render_resolved(
    resolved: ResolvedSource, package_name: str, requested_revision: str | None = None
) -> Generated:
    """Build the spec for an already-resolved config and render the package."""
    spec = build_spec(resolved.config)
    files = render_package(spec, package_name, source_info(resolved))
    return Generated(package_name, resolved, spec, files, requested_revision)


def generate(source: str, *, name: str | None = None, revision: str | None = None) -> Generated:
    """Resolve ``source``, validate it into a spec and render the package in memory."""
    resolved = resolve_source(source, revision)
    package_name = validate_package_name(name) if name else package_name_from_source(resolved)
    return render_resolved(resolved, package_name, revision)

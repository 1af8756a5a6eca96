"""``scaffold assets``: the model's tokenizer (and weights) next to its package, and the TOMLs
pointing at them.

Files come through huggingface_hub, so the Hugging Face cache (``HF_HUB_CACHE``, ``HF_HOME``) is
used and filled as usual and ``HF_HUB_OFFLINE=1`` means "only what is cached". They land in
``<package>/assets/``: tokenizer files and config.json are copied (small); with weights, the
safetensors files are links into the cache (no second copy of many gigabytes). The full-size
train configs (every TOML under ``train_configs/`` whose flavor is not the debug model, whose
vocabulary is not the tokenizer's) then get ``model.hf_assets_path`` and
``training.tokenizer_path`` and, with weights, ``checkpoint.initial_load_path`` and
``checkpoint.initial_load_in_hf = true`` (continued pretraining from the hub weights). Paths are
written relative to the package's parent folder, where the package's commands run.
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from scaffolder.errors import ScaffoldError
from scaffolder.tomledit import planned_toml

ASSETS_DIR = "assets"
CONFIG_FILE = "config.json"
TOKENIZER_FILES = (  # whichever of these the repo has
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
)
SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"
DEBUG_FLAVOR = "debugmodel"


@dataclass
class AssetsResult:
    repo_id: str
    revision: str  # the commit the files came from
    folder: Path
    files: list[str] = field(default_factory=list)  # names in the assets folder
    linked: list[str] = field(default_factory=list)  # of those, links into the HF cache
    configs: dict[str, bool] = field(default_factory=dict)  # TOML path -> changed


def recorded_repo(package: Path) -> tuple[str, str | None]:
    """The hub repo (and revision) the package was generated from, from ``.scaffold/``."""
    from scaffolder.record import read_record

    source = read_record(package).source
    if not source.repo_id:
        raise ScaffoldError(
            f"{package} was generated from {source.describe()}, not a hub repo; "
            "copy the tokenizer (and weights) into an assets folder and set "
            "model.hf_assets_path / training.tokenizer_path in its TOML by hand"
        )
    return source.repo_id, source.revision


def _snapshot(repo_id: str, revision: str | None, patterns: list[str]) -> Path:
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    from scaffolder.source import hub_cache_dir, hub_offline

    try:
        folder = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=patterns,
            cache_dir=hub_cache_dir(),
            local_files_only=hub_offline(),
        )
    except LocalEntryNotFoundError:
        at = f" at revision {revision}" if revision else ""
        raise ScaffoldError(
            f"{repo_id}{at} is not in the Hugging Face cache {hub_cache_dir()} and "
            + (
                "HF_HUB_OFFLINE is set; unset it to download, or fill the cache with "
                f"'hf download {repo_id}'"
                if hub_offline()
                else "could not be downloaded; check the repo id, your network and hub login"
            )
        ) from None
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise ScaffoldError(f"could not fetch {repo_id}: {str(error).splitlines()[0]}") from None
    return Path(folder)


def _weight_files(snapshot: Path, repo_id: str, revision: str | None) -> list[str]:
    """The safetensors files of the checkpoint: the shards the index lists, or the one file."""
    index = snapshot / SAFETENSORS_INDEX
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        _snapshot(repo_id, revision, shards)
        return [SAFETENSORS_INDEX, *shards]
    _snapshot(repo_id, revision, [SAFETENSORS_SINGLE])
    return [SAFETENSORS_SINGLE]


def fetch_assets(package: Path, weights: bool = False, revision: str | None = None) -> AssetsResult:
    """Fetch the tokenizer (and with ``weights`` the checkpoint) into ``package/assets`` and
    point the full-size train configs at them."""
    package = package.resolve()
    if not (package / "__init__.py").is_file() or not (package / "train_configs").is_dir():
        raise ScaffoldError(f"{package} is not a generated package (no train_configs/)")
    repo_id, recorded_revision = recorded_repo(package)
    revision = revision or recorded_revision
    patterns = [CONFIG_FILE, *TOKENIZER_FILES] + ([SAFETENSORS_INDEX] if weights else [])
    snapshot = _snapshot(repo_id, revision, patterns)
    names = [name for name in (CONFIG_FILE, *TOKENIZER_FILES) if (snapshot / name).is_file()]
    if not any(name in names for name in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise ScaffoldError(
            f"{repo_id} (snapshot {snapshot.name}) has no tokenizer.json, tokenizer.model or "
            "vocab.json" + (" in the cache; unset HF_HUB_OFFLINE to download" if _offline() else "")
        )
    large = _weight_files(snapshot, repo_id, revision) if weights else []
    missing = [name for name in large if not (snapshot / name).is_file()]
    if missing:
        raise ScaffoldError(
            f"{repo_id} (snapshot {snapshot.name}) has no {missing[0]}"
            + (" in the cache; unset HF_HUB_OFFLINE to download it" if _offline() else "")
            + " (only safetensors checkpoints are read)"
        )
    plans = planned_configs(package, weights)  # every TOML checked before anything is written
    folder = package / ASSETS_DIR
    folder.mkdir(exist_ok=True)
    result = AssetsResult(repo_id, snapshot.name, folder)
    for name in names:
        _replace(folder / name, lambda target, src=snapshot / name: shutil.copyfile(src, target))
        result.files.append(name)
    for name in large:
        source = (snapshot / name).resolve()  # the blob, not the snapshot's relative link
        if name.endswith(".json"):
            _replace(folder / name, lambda target, src=source: shutil.copyfile(src, target))
        else:
            _replace(folder / name, lambda target, src=source: os.symlink(src, target))
            result.linked.append(name)
        result.files.append(name)
    result.configs = write_configs(package, plans)
    return result


def _offline() -> bool:
    from scaffolder.source import hub_offline

    return hub_offline()


def _replace(target: Path, write) -> None:
    """Write ``target`` through a temporary name, then swap it in (a re-run replaces it)."""
    temporary = target.with_name(f".{target.name}.tmp")
    if temporary.is_symlink() or temporary.exists():
        temporary.unlink()
    write(temporary)
    os.replace(temporary, target)


def planned_configs(package: Path, weights: bool) -> dict[Path, str]:
    """Each full-size TOML with the asset keys set: {path: new text}; nothing is written, so a
    TOML that cannot be edited stops the command before any file changes."""
    assets = f"{package.name}/{ASSETS_DIR}"
    values: dict[str, dict[str, str | bool]] = {
        "model": {"hf_assets_path": assets},
        "training": {"tokenizer_path": assets},
    }
    if weights:
        values["checkpoint"] = {"initial_load_path": assets, "initial_load_in_hf": True}
    plans = {}
    for path in sorted((package / "train_configs").glob("*.toml")):
        try:
            flavor = tomllib.loads(path.read_text()).get("model", {}).get("flavor")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError):
            flavor = None  # planned_toml names the problem
        if flavor != DEBUG_FLAVOR:
            plans[path] = planned_toml(path, values)
    return plans


def write_configs(package: Path, plans: dict[Path, str]) -> dict[str, bool]:
    """Write the planned TOMLs; {path relative to the package's parent: whether it changed}."""
    changed = {}
    for path, text in plans.items():
        differs = text != path.read_text(encoding="utf-8")
        if differs:
            path.write_text(text, encoding="utf-8", newline="")
        changed[str(path.relative_to(package.parent))] = differs
    return changed

"""Which model package folder holds a config file (paths only: imports nothing of the runtime)."""

from __future__ import annotations

from pathlib import Path


def package_dir_from_config_file(config_file: str) -> Path | None:
    """The top package folder holding ``config_file`` (``<pkg>/train_configs/x.toml`` -> ``<pkg>``).

    Walks up from the file to the first folder with an ``__init__.py``, then on while the parent
    is a package too; None when the file is not inside a package.
    """
    if not config_file:
        return None
    folder = Path(config_file).resolve().parent
    while folder != folder.parent and not (folder / "__init__.py").is_file():
        folder = folder.parent
    if not (folder / "__init__.py").is_file():
        return None
    while (folder.parent / "__init__.py").is_file():
        folder = folder.parent
    return folder

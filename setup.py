"""Package layout (everything else is in pyproject.toml).

The cookiecutter templates stay at the repository's top level, ``templates/``, and ship inside
the wheel as the package ``scaffolder.templates`` (``templates/__init__.py`` makes it one, so the
editable install maps it too); ``scaffolder/render.py`` reads them with ``importlib.resources``.
pyproject.toml's ``packages.find`` cannot map a folder to another package name, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["scaffolder*", "runtime*"]), "scaffolder.templates"],
    package_dir={"scaffolder.templates": "templates"},
    package_data={
        "scaffolder": ["bundled_configs/**/*.json", "data/*.json"],
        "scaffolder.templates": ["**/*"],
    },
)

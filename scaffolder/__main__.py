"""``python -m scaffolder`` runs the ``scaffold`` CLI."""

from scaffolder.cli import app

app(prog_name="scaffold")

"""Package data, not code: the cookiecutter templates, installed as ``scaffolder.templates``.

``scaffolder/render.py`` reads ``package/`` from here with ``importlib.resources``; setup.py maps
this folder to that package name in the wheel and in the editable install alike.
"""

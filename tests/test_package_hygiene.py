"""Templates name no family and read typed features; packages say only what is true of their model.

- No template (file name or text) names a model family, and none reads the features as a dict.
- No file of a package names another family: the words of every other family's name are absent
  (``llama3`` stays allowed as a rope type in a package whose config uses that rope scaling).
- Generated tests branch on nothing fixed at generation: no ``if`` over ``ARCHITECTURE`` (the
  config's values as the package was generated) or over a module-level constant.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from scaffolder.families import ALL_RECIPES

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = REPO_ROOT / "templates"
EXAMPLES = REPO_ROOT / "generated_examples"

# Words that name a family in prose, code or file names (the recipes' names and the
# spellings their checkpoints and docs use).
FAMILY_WORDS = {
    "llama": r"llama(?!3)",
    "mistral": r"mistral",
    "qwen": r"qwen",
    "phi": r"phi[-_ ]?\d|\bphi\b",
    "olmo": r"olmo",
    "granite": r"granite",
    "gemma": r"gemma",
    "starcoder": r"starcoder",
    "gpt_neox": r"neox|pythia",
    "gpt2": r"gpt[-_]?2",
    "mixtral": r"mixtral",
    "deepseek": r"deepseek",
    "gpt_oss": r"gpt[-_ ]?oss",
}
# A package whose config uses llama3 rope scaling names that rope type (transformers' name for
# it, "Llama 3 scaling" in prose); that alone is not a family.
LLAMA3 = re.compile(r"llama[ -]?3", re.IGNORECASE)


def _template_files() -> list[Path]:
    return sorted(
        path
        for path in TEMPLATES.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def test_recipes_cover_the_family_words() -> None:
    """Every registered family has a word in FAMILY_WORDS, so a new family is checked too."""
    for recipe in ALL_RECIPES:
        assert any(re.search(pattern, recipe.name) for pattern in FAMILY_WORDS.values()), (
            recipe.name
        )


def test_templates_name_no_family_and_read_typed_features() -> None:
    offenders = []
    for path in _template_files():
        relpath = path.relative_to(TEMPLATES).as_posix()
        text = path.read_text(encoding="utf-8")
        for family, pattern in FAMILY_WORDS.items():
            if re.search(pattern, relpath, re.IGNORECASE):
                offenders.append(f"{relpath}: file name names {family}")
            for match in re.finditer(pattern, text, re.IGNORECASE):
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{relpath}:{line}: names {family}")
        for pattern in (
            r"features\.get\(",
            r"\bf\.get\(",
            r"in s\.features\b",
            r"model_type\s*[=!]=",
        ):
            for match in re.finditer(pattern, text):
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{relpath}:{line}: {match.group(0)}")
    assert offenders == []


def package_family_words(package: Path, family: str, rope_type: str | None) -> list[str]:
    """Where the files of ``package`` (a ``family`` package) name another family."""
    found = []
    for path in sorted(package.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        relpath = path.relative_to(package).as_posix()
        text = path.read_text(encoding="utf-8")
        if rope_type == "llama3":
            text = LLAMA3.sub("", text)
        for word, pattern in FAMILY_WORDS.items():
            if re.search(pattern, family, re.IGNORECASE):
                continue  # its own family
            for match in re.finditer(pattern, text, re.IGNORECASE):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{relpath}:{line}: names {word}")
    return found


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def generation_time_branches(source: str) -> list[str]:
    """Branches whose condition is fixed at generation, as ``line: code``.

    Fixed: ``ARCHITECTURE`` (the config's values, imported from model/args.py), module-level
    literals, and names assigned only from fixed values (``rope_type = ARCHITECTURE[...]``).
    """
    tree = ast.parse(source)
    fixed = {"ARCHITECTURE"}
    builtins = set(dir(__builtins__)) if isinstance(__builtins__, dict) else set(dir(__builtins__))
    for node in tree.body:
        if isinstance(node, ast.Assign) and _is_literal(node.value):
            fixed |= {t.id for t in node.targets if isinstance(t, ast.Name)}

    def only_fixed(expr: ast.expr) -> bool:
        names = {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)} - builtins
        return bool(names) and names <= fixed

    for node in ast.walk(tree):  # names assigned from fixed values are fixed too
        if isinstance(node, ast.Assign) and only_fixed(node.value):
            fixed |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return [
        f"{node.lineno}: {ast.unparse(node.test)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.If | ast.IfExp | ast.While) and only_fixed(node.test)
    ]


def assert_package_is_clean(package: Path, family: str, rope_type: str | None) -> None:
    """No other family named anywhere; no generated test branching on generation-time values."""
    assert package_family_words(package, family, rope_type) == [], package.name
    for test_file in sorted((package / "tests").glob("*.py")):
        branches = generation_time_branches(test_file.read_text(encoding="utf-8"))
        assert branches == [], f"{test_file.relative_to(package)}: {branches}"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_example_packages_are_clean(example: str) -> None:
    spec = json.loads((EXAMPLES / example / ".scaffold" / "spec.json").read_text())
    rope_type = (spec.get("rope") or {}).get("type")
    assert_package_is_clean(EXAMPLES / example, spec["family"], rope_type)


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """The helpers above flag a foreign family word and a branch on ARCHITECTURE."""
    package = tmp_path / "pkg"
    (package / "tests").mkdir(parents=True)
    (package / "README.md").write_text("Unlike Llama, this model has ...\n")
    assert package_family_words(package, "qwen3", None) == ["README.md:1: names llama"]
    assert package_family_words(package, "llama", None) == []
    (package / "README.md").write_text("rope_type llama3\n")
    assert package_family_words(package, "qwen3", "llama3") == []
    source = (
        'ARCHITECTURE = {"rope_type": "linear"}\nif ARCHITECTURE["rope_type"] == "x":\n    pass\n'
    )
    assert generation_time_branches(source) == ["2: ARCHITECTURE['rope_type'] == 'x'"]
    assert generation_time_branches("def f(x):\n    if x:\n        pass\n") == []
    literal = 'GQA = True\nFULL = os.environ.get("X")\nif GQA:\n    pass\nif FULL:\n    pass\n'
    assert generation_time_branches(literal) == ["3: GQA"]
    derived = (
        'def t():\n    kind = ARCHITECTURE["rope_type"]\n    if kind in ("a", "b"):\n        pass\n'
    )
    assert generation_time_branches(derived) == ["3: kind in ('a', 'b')"]
    mixed = "def t(value):\n    if abs(value) > TOL:\n        pass\nTOL = 1e-5\n"
    assert generation_time_branches(mixed) == []

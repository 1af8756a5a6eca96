"""The three-way merge engine: diff3 line merges and the libcst structural merge."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaffolder.merge import DEFAULT_LABELS, merge_file, merge_lines, merge_python
from scaffolder.merge.python import _line_fallback

MERGE_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def lines(*items: str) -> str:
    """Join items into a newline-terminated text."""
    return "".join(f"{item}\n" for item in items)


# --- merge_lines ---------------------------------------------------------------------------


def test_lines_takes_changes_made_on_one_side():
    base = lines("a", "b", "c", "d", "e")
    ours = lines("a", "B", "c", "d", "e")
    theirs = lines("a", "b", "c", "d", "E")
    result = merge_lines(base, ours, theirs)
    assert (result.text, result.conflicts, result.strategy) == (
        lines("a", "B", "c", "d", "E"),
        0,
        "lines",
    )


def test_lines_takes_an_identical_change_once():
    base = lines("a", "b", "c")
    both = lines("a", "x", "y", "c")
    assert merge_lines(base, both, both).text == both


def test_lines_takes_a_one_sided_deletion():
    base = lines("a", "b", "c", "d")
    result = merge_lines(base, lines("a", "c", "d"), lines("a", "b", "c", "D"))
    assert result.text == lines("a", "c", "D") and result.conflicts == 0


def test_lines_marks_overlapping_changes_with_both_sides_and_base():
    base = lines("x", "value: 1", "y")
    result = merge_lines(base, lines("x", "value: 2", "y"), lines("x", "value: 3", "y"))
    assert result.conflicts == 1
    assert result.text == lines(
        "x",
        "<<<<<<< ours (your edits)",
        "value: 2",
        "||||||| base",
        "value: 1",
        "=======",
        "value: 3",
        ">>>>>>> theirs (new render)",
        "y",
    )


def test_lines_conflicts_on_different_insertions_at_the_same_place():
    base = lines("a", "b")
    result = merge_lines(base, lines("a", "mine", "b"), lines("a", "new", "b"))
    assert result.conflicts == 1
    assert "mine\n" in result.text and "new\n" in result.text


def test_lines_writes_lines_both_sides_share_outside_the_markers():
    base = lines("a", "old", "z")
    ours = lines("a", "same1", "mine", "same2", "z")
    theirs = lines("a", "same1", "theirs", "same2", "z")
    text = merge_lines(base, ours, theirs).text
    assert text.startswith(lines("a", "same1", "<<<<<<< ours (your edits)", "mine"))
    assert text.endswith(lines(">>>>>>> theirs (new render)", "same2", "z"))


def test_lines_counts_separate_conflicts_and_uses_given_labels():
    base = lines("1", "2", "3", "4", "5")
    ours = lines("1", "A", "3", "4", "C")
    theirs = lines("1", "B", "3", "4", "D")
    result = merge_lines(base, ours, theirs, labels=("mine", "orig", "gen"))
    assert result.conflicts == 2
    assert result.text.count("<<<<<<< mine\n") == 2 and result.text.count(">>>>>>> gen\n") == 2


def test_lines_keeps_markers_on_their_own_line_without_a_final_newline():
    result = merge_lines("a\nb", "a\nmine", "a\ntheirs")
    assert "mine\n|||||||" in result.text and "theirs\n>>>>>>>" in result.text


def test_lines_handles_empty_inputs():
    assert merge_lines("", "", "").text == ""
    assert merge_lines("", "a\n", "").text == "a\n"
    assert merge_lines("a\n", "a\n", "").text == ""


# --- merge_python ---------------------------------------------------------------------------

BASE_PY = '''"""Module docstring."""

import math

SCALE = 2


def alpha(x):
    y = x + 1
    return y * SCALE


def beta(x):
    return x - 1


class Model:
    """A model."""

    def __init__(self):
        self.w = 1

    def forward(self, x):
        x = x * self.w
        return x
'''


def test_python_keeps_a_function_only_the_user_edited():
    ours = BASE_PY.replace("y = x + 1", "y = x + 100")
    theirs = BASE_PY.replace("return x - 1", "return x - 2")
    result = merge_python(BASE_PY, ours, theirs)
    assert result.strategy == "python" and result.conflicts == 0
    assert "y = x + 100" in result.text and "return x - 2" in result.text


def test_python_keeps_a_method_the_user_added_in_place():
    ours = BASE_PY.replace(
        "    def forward(self, x):",
        "    def extra(self):\n        return 0\n\n    def forward(self, x):",
    )
    theirs = BASE_PY.replace("self.w = 1", "self.w = 2")
    text = merge_python(BASE_PY, ours, theirs).text
    assert "self.w = 2" in text
    assert text.index("def __init__") < text.index("def extra") < text.index("def forward")


def test_python_takes_a_function_only_the_generator_changed():
    ours = BASE_PY + "\n\ndef mine():\n    return 1\n"
    theirs = BASE_PY.replace("return y * SCALE", "return y * SCALE * 2")
    result = merge_python(BASE_PY, ours, theirs)
    assert "return y * SCALE * 2" in result.text and "def mine" in result.text
    assert result.conflicts == 0


def test_python_inserts_generator_members_after_their_predecessor():
    ours = BASE_PY.replace("y = x + 1", "y = x + 100") + "\n\ndef mine():\n    return 1\n"
    theirs = BASE_PY.replace(
        "\n\nclass Model:", "\n\ndef gamma(x):\n    return x\n\n\nclass Model:"
    ).replace("import math\n", "import math\nimport os\n")
    text = merge_python(BASE_PY, ours, theirs).text
    assert text.index("import math") < text.index("import os") < text.index("SCALE = 2")
    assert text.index("def beta") < text.index("def gamma") < text.index("class Model")
    ast.parse(text)


def test_python_user_deleted_function_stays_deleted():
    ours = BASE_PY.replace("\n\ndef beta(x):\n    return x - 1\n", "")
    theirs = BASE_PY.replace("SCALE = 2", "SCALE = 3")
    result = merge_python(BASE_PY, ours, theirs)
    assert "def beta" not in result.text and "SCALE = 3" in result.text
    assert result.conflicts == 0


def test_python_user_deleted_function_the_generator_changed_conflicts():
    ours = BASE_PY.replace("\n\ndef beta(x):\n    return x - 1\n", "")
    theirs = BASE_PY.replace("return x - 1", "return x - 5")
    result = merge_python(BASE_PY, ours, theirs)
    assert result.conflicts == 1 and "return x - 5" in result.text
    assert "<<<<<<< ours" in result.text


def test_python_generator_dropped_function_goes_unless_the_user_edited_it():
    theirs = BASE_PY.replace("\n\ndef beta(x):\n    return x - 1\n", "")
    untouched = BASE_PY.replace("y = x + 1", "y = x + 100")
    assert "def beta" not in merge_python(BASE_PY, untouched, theirs).text
    edited = BASE_PY.replace("return x - 1", "return x - 10")
    result = merge_python(BASE_PY, edited, theirs)
    assert result.conflicts == 1 and "return x - 10" in result.text


def test_python_both_changed_one_function_merges_its_lines():
    ours = BASE_PY.replace(
        "        x = x * self.w\n", "        # scale first\n        x = x * self.w\n"
    )
    theirs = BASE_PY.replace("        return x\n", "        return x + 1\n")
    result = merge_python(BASE_PY, ours, theirs)
    assert result.conflicts == 0
    assert "# scale first\n        x = x * self.w\n        return x + 1\n" in result.text


def test_python_both_changed_the_same_line_conflicts_inside_that_function():
    ours = BASE_PY.replace("y = x + 1", "y = x + 100")
    theirs = BASE_PY.replace("y = x + 1", "y = x + 200").replace("SCALE = 2", "SCALE = 4")
    result = merge_python(BASE_PY, ours, theirs)
    assert result.conflicts == 1 and result.strategy == "python"
    assert "y = x + 100" in result.text and "y = x + 200" in result.text
    assert "SCALE = 4" in result.text


def test_python_same_member_added_on_both_sides_is_taken_once():
    added = BASE_PY + "\n\ndef shared():\n    return 1\n"
    result = merge_python(BASE_PY, added.replace("SCALE = 2", "SCALE = 5"), added)
    assert result.text.count("def shared") == 1 and result.conflicts == 0


def test_python_distinguishes_repeated_names():
    base = (
        "class P:\n    @property\n    def v(self):\n        return 1\n\n"
        "    @v.setter\n    def v(self, value):\n        pass\n"
    )
    ours = base.replace("return 1", "return 2")
    theirs = base.replace("pass", "self._v = value")
    result = merge_python(base, ours, theirs)
    assert "return 2" in result.text and "self._v = value" in result.text
    assert result.conflicts == 0


def test_python_falls_back_to_lines_when_a_side_does_not_parse():
    ours = BASE_PY.replace("def beta(x):", "def beta(x)")
    theirs = BASE_PY.replace("SCALE = 2", "SCALE = 3")
    result = merge_python(BASE_PY, ours, theirs)
    assert result.strategy == "python->lines"
    assert "def beta(x)\n" in result.text and "SCALE = 3" in result.text


def test_python_falls_back_to_lines_when_the_structure_is_too_different():
    ours = "def totally():\n    return 'rewritten'\n"
    result = merge_python(BASE_PY, ours, BASE_PY.replace("SCALE = 2", "SCALE = 3"))
    assert result.strategy == "python->lines"


def test_python_member_without_final_newline_can_be_followed():
    base = "def f():\n    return 1\n"
    ours = "def f():\n    return 2"
    theirs = base + "\n\ndef g():\n    return 3\n"
    result = merge_python(base, ours, theirs)
    assert (result.strategy, result.conflicts) == ("python", 0)
    assert result.text == "def f():\n    return 2\n\n\ndef g():\n    return 3\n"


def test_python_clean_but_invalid_line_merge_becomes_one_conflict():
    # A clean line merge that is not valid Python is never returned as clean.
    result = _line_fallback("a = 1\n", "a = (\n", "a = 1\n", DEFAULT_LABELS, all_parse=True)
    assert result.conflicts == 1 and result.text.startswith("<<<<<<< ours")
    unparsed = _line_fallback("a = 1\n", "a = (\n", "a = 1\n", DEFAULT_LABELS, all_parse=False)
    assert (unparsed.text, unparsed.conflicts) == ("a = (\n", 0)


def test_merge_file_dispatches_on_extension():
    # Adjacent one-line changes: distinct statements for the Python merge, one hunk for diff3.
    base, ours, theirs = lines("a = 1", "b = 2"), lines("a = 10", "b = 2"), lines("a = 1", "b = 20")
    python = merge_file("pkg/x.py", base, ours, theirs)
    assert (python.text, python.conflicts, python.strategy) == (
        lines("a = 10", "b = 20"),
        0,
        "python",
    )
    yaml = merge_file("pkg/x.yaml", base, ours, theirs)
    assert (yaml.conflicts, yaml.strategy) == (1, "lines")


# --- properties: line merges ------------------------------------------------------------------

base_lines = st.lists(st.sampled_from(["a", "b", "c", "", "}", "x = 1"]), max_size=14)


@st.composite
def edited(draw, base: list[str], tag: str) -> tuple[list[str], set[str]]:
    """Apply random inserts, deletes and changes to ``base``; return it and the lines added."""
    out, added = list(base), set()
    for n in range(draw(st.integers(0, 5))):
        op = draw(st.sampled_from(["insert", "delete", "change"]))
        new_line = f"{tag}-{n}"
        if op == "insert":
            out.insert(draw(st.integers(0, len(out))), new_line)
            added.add(new_line)
        elif out:
            at = draw(st.integers(0, len(out) - 1))
            if op == "delete":
                del out[at]
            else:
                out[at] = new_line
                added.add(new_line)
    return out, {line for line in out if line.startswith(f"{tag}-")} & added


@st.composite
def line_triples(draw):
    """A base text plus independently edited user and generator versions."""
    base = draw(base_lines)
    ours, user_lines = draw(edited(base, "user"))
    theirs, _ = draw(edited(base, "gen"))
    return lines(*base), lines(*ours), lines(*theirs), user_lines


@MERGE_SETTINGS
@given(line_triples())
def test_property_lines_never_lose_a_user_line(triple):
    base, ours, theirs, user_lines = triple
    merged = merge_lines(base, ours, theirs).text.splitlines()
    assert user_lines <= set(merged)


@MERGE_SETTINGS
@given(line_triples())
def test_property_lines_unedited_side_yields_the_other(triple):
    base, ours, theirs, _ = triple
    assert merge_lines(base, base, theirs) == merge_lines(base, theirs, theirs)
    assert (merge_lines(base, base, theirs).text, merge_lines(base, base, theirs).conflicts) == (
        theirs,
        0,
    )
    assert (merge_lines(base, ours, base).text, merge_lines(base, ours, base).conflicts) == (
        ours,
        0,
    )


# --- properties: Python merges ----------------------------------------------------------------


@dataclass
class PyModule:
    """A small module model: top-level functions and the methods of one class."""

    functions: dict[str, list[str]] = field(default_factory=dict)
    methods: dict[str, list[str]] = field(default_factory=dict)

    def copy(self) -> PyModule:
        """A deep copy."""
        return PyModule(
            {k: list(v) for k, v in self.functions.items()},
            {k: list(v) for k, v in self.methods.items()},
        )

    def render(self) -> str:
        """Python source for the model."""
        parts = ['"""Generated."""\n', "import math\n"]
        for name, body in self.functions.items():
            parts.append(f"\n\ndef {name}(x):\n" + "".join(f"    {b}\n" for b in body))
        parts.append("\n\nclass Model:\n    scale = 1\n")
        for name, body in self.methods.items():
            parts.append(f"\n    def {name}(self, x):\n" + "".join(f"        {b}\n" for b in body))
        return "".join(parts)


def _body(prefix: str, size: int) -> list[str]:
    return [f"{prefix}{i} = x + {i}" for i in range(size)] + ["return x"]


py_bases = st.builds(
    lambda nf, nm: PyModule(
        {f"f{i}": _body("v", 2 + i % 3) for i in range(nf)},
        {f"m{i}": _body("w", 1 + i % 2) for i in range(nm)},
    ),
    st.integers(1, 4),
    st.integers(1, 3),
)


@st.composite
def edit_module(draw, module: PyModule, tag: str, avoid: frozenset[str] = frozenset()):
    """Randomly edit functions/methods (lines, comments, whole bodies, adds, deletes)."""
    out, added = module.copy(), set()
    for n in range(draw(st.integers(0, 4))):
        table = draw(st.sampled_from([out.functions, out.methods]))
        names = sorted(set(table) - avoid)
        line = f"{tag}_{n} = '{tag}-{n}'"
        op = draw(st.sampled_from(["add", "delete", "insert", "change", "comment", "replace"]))
        if op == "add" or not names:
            table[f"{tag}_fn{n}"] = [line, "return x"]
            added.add(line)
            continue
        name = draw(st.sampled_from(names))
        body = table[name]
        if op == "delete":
            del table[name]
            continue
        if op == "replace":
            table[name] = [line, "return x"]
        elif op == "comment":
            line = f"# {tag} note {n}"
            body.insert(draw(st.integers(0, len(body) - 1)), line)
        elif op == "insert":
            body.insert(draw(st.integers(0, len(body) - 1)), line)
        else:
            body[draw(st.integers(0, len(body) - 2))] = line
        added.add(line)
    present = {line for body in (*out.functions.values(), *out.methods.values()) for line in body}
    return out, added & present


def _touched(base: PyModule, other: PyModule) -> frozenset[str]:
    """Names of functions and methods that differ between two module models."""
    touched = set()
    for a, b in ((base.functions, other.functions), (base.methods, other.methods)):
        touched |= {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    return frozenset(touched)


def _present(added: set[str], text: str) -> bool:
    stripped = {line.strip() for line in text.splitlines()}
    return added <= stripped


@MERGE_SETTINGS
@given(st.data(), py_bases)
def test_property_python_never_loses_a_user_line(data, base):
    ours, user_lines = data.draw(edit_module(base, "user"))
    theirs, _ = data.draw(edit_module(base, "gen"))
    result = merge_python(base.render(), ours.render(), theirs.render())
    assert _present(user_lines, result.text)
    if result.conflicts == 0:
        ast.parse(result.text)


@MERGE_SETTINGS
@given(st.data(), py_bases)
def test_property_python_disjoint_edits_merge_cleanly(data, base):
    theirs, gen_lines = data.draw(edit_module(base, "gen"))
    ours, user_lines = data.draw(edit_module(base, "user", avoid=_touched(base, theirs)))
    result = merge_python(base.render(), ours.render(), theirs.render())
    assert result.conflicts == 0 and result.strategy == "python"
    assert _present(user_lines | gen_lines, result.text)
    ast.parse(result.text)


@MERGE_SETTINGS
@given(st.data(), py_bases)
def test_property_python_unedited_side_yields_the_other(data, base):
    other, _ = data.draw(edit_module(base, "side"))
    assert merge_python(base.render(), base.render(), other.render()).text == other.render()
    assert merge_python(base.render(), other.render(), base.render()).text == other.render()

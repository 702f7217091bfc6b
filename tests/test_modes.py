"""Each mode is defined once (``asyncthink/modes.py``): its helpers, and no code elsewhere comparing mode names."""

from __future__ import annotations

import ast
from pathlib import Path

from asyncthink.modes import ORGANIZER_ROW, Mode, untrainable
from asyncthink.prompts import PromptConfig
from asyncthink.runtime_config import RuntimeConfig

REPO = Path(__file__).resolve().parents[1]
SOURCE = ["asyncthink", "envs", "training", "eval", "configs", "models", "benchmarks", "scripts"]
NAMES = {m.name for m in Mode}
VALUES = {m.value for m in Mode}


def _names_a_mode(node: ast.AST) -> bool:
    """``Mode.PARALLEL``, ``"parallel"``, or a tuple, list or set holding one."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id == "Mode" and node.attr in NAMES
    if isinstance(node, ast.Constant):
        return node.value in VALUES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_mode(e) for e in node.elts)
    return False


def _mode_comparisons(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)}" for node in ast.walk(tree)
            if isinstance(node, ast.Compare) and any(map(_names_a_mode, [node.left, *node.comparators]))]


def test_no_code_outside_modes_compares_mode_names():
    files = [p for folder in SOURCE for p in sorted((REPO / folder).rglob("*.py"))]
    found = [hit for p in files if p != REPO / "asyncthink" / "modes.py" for hit in _mode_comparisons(p)]
    assert not found, "ask the mode (asyncthink/modes.py) instead of comparing its name:\n" + "\n".join(found)


def test_the_scan_sees_a_comparison():
    probe = REPO / "tests" / "test_modes.py"  # this file compares in its own asserts below; the scan must see them
    assert any("Mode.PARALLEL" in hit for hit in _mode_comparisons(probe))


def test_top_rows_and_content_row_follow_the_mode():
    rt = RuntimeConfig(parallel_traces=3)
    assert Mode.ASYNCTHINK.top_row_ids(rt) == [ORGANIZER_ROW] == Mode.SEQUENTIAL.top_row_ids(rt)
    assert Mode.PARALLEL.top_row_ids(rt) == ["t0", "t1", "t2"]
    assert Mode.PARALLEL.content_row() is None and Mode.ASYNCTHINK.content_row() == ORGANIZER_ROW


def test_top_messages_give_the_organizer_prompt_only_to_a_forking_mode():
    prompts = PromptConfig(style="compact")
    fork = Mode.ASYNCTHINK.top_messages(prompts, "Q?", "", 4)
    plain = Mode.SEQUENTIAL.top_messages(prompts, "Q?", "", 4)
    assert plain == Mode.PARALLEL.top_messages(prompts, "Q?", "", 4) and fork != plain
    assert "organizer" in fork[0]["content"] and plain[0]["content"] == "sequential"


def test_only_voted_traces_do_not_train():
    assert [m for m in Mode if not m.trains] == [Mode.PARALLEL]
    assert untrainable(["asyncthink", "sequential", "parallel", "nope"]) == ["parallel", "nope"]
    assert Mode.PARALLEL != "sequential"  # seen by test_the_scan_sees_a_comparison


def test_who_may_fork_is_one_rule():
    """The prompt's "you may fork" and the parser's reading of forks, by depth (the executor and replay use it)."""
    flat, deep, seq = RuntimeConfig(), RuntimeConfig(max_depth=1), RuntimeConfig(mode=Mode.SEQUENTIAL)
    assert [flat.may_fork(d) for d in (0, 1)] == [True, False] == [flat.reads_forks(d) for d in (0, 1)]
    assert [deep.may_fork(d) for d in (0, 1, 2)] == [True, True, False]
    assert [deep.reads_forks(d) for d in (0, 1, 2)] == [True, True, True]  # depth 2's fork: a depth budget breach
    assert not seq.may_fork(0) and not seq.reads_forks(0)

"""Eval configs: every configs/eval_*.yaml loads; budgets, labels and validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncthink.config_io import save_config
from asyncthink.eval.config import EvalConfig, budget_label, load_eval_config, parse_budget
from asyncthink.runtime_config import Mode

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("eval_*.yaml"))


def test_there_are_eval_configs():
    names = {p.name for p in CONFIGS}
    assert {"eval_tiny.yaml", "eval_paper.yaml", "eval_transfer_sudoku.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_eval_config_loads_and_round_trips(path, tmp_path):
    cfg = load_eval_config(path)
    assert cfg.tasks and cfg.modes and cfg.engine is not None
    assert load_eval_config(save_config(cfg, tmp_path / "resolved.yaml")) == cfg


def test_paper_settings():
    cfg = load_eval_config(CONFIGS[[p.name for p in CONFIGS].index("eval_paper.yaml")])
    by_label = {t.label: t for t in cfg.tasks}
    assert set(by_label) == {"countdown", "AMC-23", "AIME-24", "sudoku-4x4"}
    assert by_label["countdown"].n == 400 and by_label["sudoku-4x4"].n == 400
    assert cfg.task_budgets(by_label["AIME-24"]) == [2048] and cfg.modes == list(Mode)[:3]
    transfer = load_eval_config(CONFIGS[[p.name for p in CONFIGS].index("eval_transfer_sudoku.yaml")])
    assert [t.name for t in transfer.tasks] == ["sudoku"] and set(transfer.modes) == set(Mode)


def test_overrides_and_budget_forms():
    cfg = load_eval_config(
        None,
        [
            "tasks=[countdown, {name: math, options: {dataset: amc23}}]",
            "budgets=[1K, 1536, 2k]",
            "modes=[asyncthink]",
            "max_problems=3",
            "samples=2",
        ],
    )
    assert [t.label for t in cfg.tasks] == ["countdown", "math-amc23"]
    assert cfg.budgets == [1024, 1536, 2048] and [budget_label(b) for b in cfg.budgets] == ["1K", "1536", "2K"]
    assert cfg.task_n(cfg.tasks[0]) == 3 and cfg.task_samples(cfg.tasks[0]) == 2
    rt = cfg.runtime_for(Mode.PARALLEL, 1536)
    assert rt.mode == Mode.PARALLEL and rt.max_organizer_tokens == 1536 and rt.temperature == cfg.runtime.temperature
    assert parse_budget("1.5K") == 1536 and parse_budget(300) == 300


@pytest.mark.parametrize(
    "overrides,message",
    [
        ([], "tasks must list at least one task, got none"),
        (["tasks=[countdown]", "modes=[serial]"], "mode must be one of .*got 'serial'"),
        (["tasks=[countdown]", "budgets=[2M]"], "budget must be a token count or like '2K', got '2M'"),
        (["tasks=[countdown]", "budgets=[1K, 1024]"], "budgets must not repeat"),
        (["tasks=[countdown]", "samples=0"], "samples must be >= 1, got 0"),
        (["tasks=[countdown]", "ci=1.5"], r"ci must be in \(0, 1\), got 1.5"),
        (["tasks=[countdown, countdown]"], r"task labels must be unique, got \['countdown', 'countdown'\]"),
        (["tasks=[{name: countdown, label: 'a b'}]"], "task label must be .*got 'a b'"),
        (["tasks=[{name: countdown, nn: 3}]"], r"tasks\[0\]\.: unknown key\(s\) \['nn'\]"),
        (["tasks=[countdown]", "runtime.capacity=1"], "capacity must be >= 2 for asyncthink, got 1"),
    ],
)
def test_validation_errors_quote_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_eval_config(None, overrides)


def test_every_field_is_documented():
    import ast
    import inspect

    import asyncthink.eval.config as module

    tree = ast.parse(inspect.getsource(module))
    for node in [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in ("EvalConfig", "TaskSpec")]:
        body = node.body
        for k, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign):
                doc = body[k + 1] if k + 1 < len(body) else None
                assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant), stmt.target.id
    assert EvalConfig.__doc__

"""``scripts/ablation.py`` at its smallest size: RL runs and their evaluations become a ``results.json`` with the
keys other tools read (seeds paired and pooled, baselines trained alike), its tables and curves; and the docs'
tables of the shipped model are the ones its ``results.json`` gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncthink.engines.scripted import ScriptedEngine
from asyncthink.envs import make_task
from asyncthink.eval.config import load_eval_config
from asyncthink.eval.harness import run_eval
from tests.results_contract import COMPARISON_KEYS, RUN_KEYS, load_script

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "models" / "tiny-organizer" / "results.json"
OPTIONS = "{n_numbers: 3, min_number: 1, max_number: 9, min_target: 5, max_target: 40, required: 2, " \
          "test_fraction: 0.3}"


def script_module():
    return load_script("ablation")


def engine_answering(right_every: int) -> ScriptedEngine:
    """Answers every ``right_every``-th held-out problem with its two gold solutions, the rest wrong."""
    problems = make_task("countdown", n_numbers=3, min_number=1, max_number=9, min_target=5, max_target=40,
                         required=2, test_fraction=0.3).dataset("test", 12, 0)
    return ScriptedEngine({p["question"]: "<ANSWER>" + ("; ".join(json.loads(p["gold"])) if k % right_every == 0
                                                        else "1+1; 2+2") + "</ANSWER>"
                           for k, p in enumerate(problems)})


async def evaluate(folder: Path, engine: ScriptedEngine, modes: list[str]) -> None:
    cfg = load_eval_config(None, [f"tasks=[{{name: countdown, n: 12, options: {OPTIONS}}}]", "samples=2",
                                  "budgets=[300]", "bootstrap=50", f"modes=[{', '.join(modes)}]",
                                  "runtime.prompts.style=compact", "runtime.temperature=0", "plots=false"])
    await run_eval(cfg, folder, engine=engine, progress=False)


def fake_run(folder: Path, rising: bool) -> None:
    """An RL run's folder: a final model and 12 steps of metrics whose score rises or falls."""
    (folder / "final").mkdir(parents=True)
    rows = [{"step": s, "reward": 0.1 * s if rising else -0.1 * s, "score": 0.5 + (0.02 if rising else -0.02) * s,
             "accuracy": 0.4, "eta_over_capacity": 0.5, "forks": 3.0, "entropy": 0.1, "logprob_gap": 1e-7,
             "tis_capped": 0.0, "tis_raw_max": 1.01, "grad_norm": 0.2, "update_kl": 0.01 / (s + 1),
             "groups_without_signal": 0.25, "trained_tokens/organizer": 100.0, "trained_tokens/worker": 300.0,
             "status/ok": 60.0, "status/format_error": 4.0} for s in range(12)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


async def test_runs_become_results_json_with_paired_seeds_and_baselines_trained_alike(tmp_path, monkeypatch):
    module = script_module()
    monkeypatch.setattr(module, "RUNS", tmp_path / "runs")
    evals = tmp_path / "evals"
    (tmp_path / "runs" / "sft").mkdir(parents=True)
    await evaluate(module.eval_dir(evals, "sft", None), engine_answering(3), module.MODES["sft"])
    for seed in (0, 1):
        fake_run(module.run_dir("rl", seed), rising=True)
        await evaluate(module.eval_dir(evals, "rl", seed), engine_answering(1 + seed), module.MODES["rl"])
        fake_run(module.run_dir("sequential-only", seed), rising=True)
        await evaluate(module.eval_dir(evals, "rl-sequential-only", seed), engine_answering(4),
                       module.MODES["rl-sequential-only"])
    fake_run(module.run_dir("before-fix", 0), rising=False)
    await evaluate(module.eval_dir(evals, "rl-before-fix", 0), engine_answering(6), ["asyncthink"])
    fake_run(module.run_dir("asyncthink-only", 0), rising=True)
    await evaluate(module.eval_dir(evals, "rl-asyncthink-only", 0), engine_answering(2), ["asyncthink"])

    results = module.collect(evals)
    assert all(RUN_KEYS <= set(run) for run in results["runs"])
    assert len(results["runs"]) == 3 + 2 * 3 + 2 * 2 + 1 + 1  # every checkpoint x seed x mode evaluated
    assert all(COMPARISON_KEYS <= set(c) for c in results["comparisons"])
    pooled = next(c for c in results["comparisons"] if c["a"] == "asyncthink sft" and c["b"] == "asyncthink rl"
                  and c["metric"] == "accuracy" and c["seeds"] == [0, 1])
    assert pooled["diff"] > 0  # seed 0 answers all, seed 1 half, SFT a third
    baselines = {c["a"] for c in results["comparisons"] if c["b"] == "asyncthink rl"}
    assert {"parallel rl", "sequential rl", "parallel rl-sequential-only", "sequential rl-sequential-only"} <= baselines
    assert {s["metric"] for s in results["seed_spread"]} == set(module.METRICS)
    before = next(t for t in results["training"] if t["arm"] == "before-fix")
    assert before["score_last10"] < before["score_first10"] and before["worker_token_share"] == 0.75

    tables = module.tables(results)
    assert "| before-fix | 0 | 0.410 -> 0.370 |" in tables
    assert "| rl | asyncthink |" in tables and "| AsyncThink minus parallel (same RL checkpoint) | 0, 1 |" in tables
    # one checkpoint per mode (seed 0) against the mixed one
    assert "| AsyncThink minus sequential (one RL checkpoint per mode) | 0 |" in tables
    assert "| asyncthink: mixed checkpoint minus its own-mode one | 0 |" in tables
    assert "| parallel: mixed checkpoint minus its own-mode one | 0 |" in tables
    assert [p.name for p in module.plot(tmp_path)] == ["ablation_curves.png", "seed_curves.png"]


def test_train_refuses_an_unknown_arm():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(REPO / "scripts" / "ablation.py"), "train", "bogus"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "bogus" in done.stderr


@pytest.mark.skipif(not RESULTS.exists(), reason="no shipped results.json")
def test_the_docs_tables_are_the_ones_results_json_gives():
    tables = script_module().tables(json.loads(RESULTS.read_text()))
    text = (REPO / "docs" / "tiny-organizer.md").read_text()
    assert all(table in text for table in tables.split("\n\n") if table.count("\n") > 1)

"""``scripts/smollm2_results.py``: the SmolLM2 math organizer's evaluations (base, SFT, RL seeds, the fork-keeping
arm; two tasks, three modes) and RL runs become a ``results.json`` with the keys other tools read, and its tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncthink.engines.scripted import ScriptedEngine
from asyncthink.envs import make_task
from asyncthink.eval.config import load_eval_config
from asyncthink.eval.harness import run_eval
from tests.results_contract import COMPARISON_KEYS, REPO, RUN_KEYS, load_script

RESULTS = REPO / "models" / "smollm2-math-organizer" / "results.json"
COUNTDOWN = "{n_numbers: 3, min_number: 1, max_number: 9, min_target: 5, max_target: 40, required: 2}"


def engine_answering(right_every: int) -> ScriptedEngine:
    """Every ``right_every``-th held-out math problem right, the rest wrong; every countdown problem wrong."""
    math = make_task("math_gen").dataset("test", 8, 0)
    countdown = make_task("countdown", n_numbers=3, min_number=1, max_number=9, min_target=5, max_target=40,
                          required=2).dataset("test", 4, 0)
    answers = {p["question"]: f"<ANSWER>\\boxed{{{p['gold'] if k % right_every == 0 else -1}}}</ANSWER>"
               for k, p in enumerate(math)}
    return ScriptedEngine({**answers, **{p["question"]: "<ANSWER>1+1; 2+2</ANSWER>" for p in countdown}})


async def evaluate(folder: Path, engine: ScriptedEngine) -> None:
    tasks = (f"tasks=[{{name: math_gen, label: math_gen-heldout, n: 8}}, "
             f"{{name: countdown, n: 4, options: {COUNTDOWN}}}]")
    cfg = load_eval_config(None, [tasks, "samples=2", "budgets=[300]", "bootstrap=50", "runtime.temperature=0",
                                  "runtime.prompts.style=compact", "plots=false"])
    await run_eval(cfg, folder, engine=engine, progress=False)


def fake_rl_run(folder: Path) -> None:
    folder.mkdir(parents=True)
    rows = [{"step": s, "reward": 0.05 * s, "score": 0.1 * s, "accuracy": 0.1 * s, "logprob_gap": 1e-4,
             "update_kl": 1e-3, "groups_without_signal": 0.5, "status/ok": 30, "status/format_error": 2}
            for s in range(12)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "wall_s.txt").write_text("600.5")


async def test_runs_become_results_json_with_every_checkpoint_mode_and_task(tmp_path):
    module = load_script("smollm2_results")
    await evaluate(tmp_path / "math_eval_base", engine_answering(8))
    await evaluate(tmp_path / "math_eval_sft", engine_answering(4))
    await evaluate(tmp_path / "math_eval_sft_full", engine_answering(2))
    (tmp_path / "math_sft").mkdir()
    (tmp_path / "math_sft" / "metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n{"train_runtime": 1614.0}\n')
    for seed in (0, 1):
        await evaluate(tmp_path / f"math_eval_rl-s{seed}", engine_answering(1 + seed))
        fake_rl_run(tmp_path / f"math_rl-s{seed}")
    await evaluate(tmp_path / "math_eval_rl_forks-s0", engine_answering(2))
    fake_rl_run(tmp_path / "math_rl_forks-s0")
    (tmp_path / "math_eval_rl_forks-s3").mkdir()  # started, never finished: not a seed to report
    assert module.evaluated_fork_seeds(tmp_path) == [0]  # what the script reports when not told
    results = module.collect(tmp_path, [0, 1], [0])
    assert all(RUN_KEYS <= set(run) for run in results["runs"])
    assert len(results["runs"]) == 2 * 6 * 3  # tasks x (base, sft, sft-full, rl s0, rl s1, rl-forks s0) x modes
    assert all(COMPARISON_KEYS <= set(c) for c in results["comparisons"])
    rl_over_sft = [c for c in results["comparisons"] if c["task"] == "math_gen-heldout" and c["metric"] == "accuracy"
                   and c["a"] == "asyncthink sft" and c["b"] == "asyncthink rl"]
    assert [c["seeds"] for c in rl_over_sft] == [[0], [1], [0, 1]]
    assert all(c["diff"] > 0 for c in rl_over_sft)  # RL seed 0 answers all, seed 1 half, SFT a quarter
    assert any(c["b"] == "asyncthink rl" and c["a"] == "parallel rl" for c in results["comparisons"])
    full_over_lora = [c for c in results["comparisons"] if c["task"] == "math_gen-heldout"
                      and c["metric"] == "accuracy" and c["b"] == "asyncthink sft-full"]
    assert [c["a"] for c in full_over_lora] == ["asyncthink sft"] and full_over_lora[0]["diff"] > 0
    forks_arm = {(c["a"], tuple(c["seeds"])): c["diff"] for c in results["comparisons"]
                 if c["task"] == "math_gen-heldout" and c["metric"] == "accuracy"
                 and c["b"] == "asyncthink rl-forks" and c["a"].startswith("asyncthink")}
    assert forks_arm == {("asyncthink sft", (0,)): 0.25, ("asyncthink rl", (0,)): -0.5}  # 1/2 vs 1/4 and vs all
    stages = {t["stage"]: t["seconds"] for t in results["stages"]}
    assert stages["sft train"] == 1614.0 and stages["rl train seed 1"] == 600.5
    assert {"eval base", "eval sft", "eval sft-full", "eval rl-s0", "eval rl-s1", "eval rl-forks-s0"} <= set(stages)
    assert stages["rl-forks train seed 0"] == 600.5
    assert [(t["checkpoint"], t["seed"]) for t in results["training"]] == [("rl", 0), ("rl", 1), ("rl-forks", 0)]
    assert results["training"][0]["reward_last10"] > results["training"][0]["reward_first10"]
    text = module.tables(results)
    assert "| held-out math_gen | rl | 0 | asyncthink |" in text and "| held-out countdown | base |" in text
    assert "| sft train | 26.9 |" in text and "| rl-forks | 0 | 12 |" in text
    summary = module.readme_tables(results)
    assert "| rl seed 1 | asyncthink |" in summary and "countdown" not in summary and "| eval sft-full |" in summary


@pytest.mark.skipif(not RESULTS.exists(), reason="no shipped results.json yet")
def test_the_docs_and_readme_tables_are_the_ones_results_json_gives():
    module, results = load_script("smollm2_results"), json.loads(RESULTS.read_text())
    assert module.tables(results) in (REPO / "docs" / "smollm2.md").read_text()
    assert module.readme_tables(results) in (REPO / "README.md").read_text()

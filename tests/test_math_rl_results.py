"""``scripts/math_rl_results.py``: seed runs become a ``results.json`` with the keys other tools read, and the docs'
table of the shipped math results is the one ``results.json`` gives."""

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
RESULTS = REPO / "models" / "tiny-math-organizer" / "results.json"


def script_module():
    return load_script("math_rl_results")


def engine_answering(right_every: int) -> ScriptedEngine:
    """Answers every ``right_every``-th held-out problem right and the rest wrong, in every mode."""
    problems = make_task("math_gen").dataset("test", 12, 0)
    return ScriptedEngine({p["question"]: f"<ANSWER>\\boxed{{{p['gold'] if k % right_every == 0 else -1}}}</ANSWER>"
                           for k, p in enumerate(problems)})


async def evaluate(folder: Path, engine: ScriptedEngine, distinct: str) -> None:
    cfg = load_eval_config(None, [f"tasks=[{{name: math_gen, n: 12, options: {{distinct: {distinct}}}}}]",
                                  "samples=2", "budgets=[200]", "bootstrap=50", "modes=[asyncthink, sequential]",
                                  "runtime.prompts.style=compact", "runtime.temperature=0", "plots=false"])
    await run_eval(cfg, folder, engine=engine, progress=False)


async def test_seed_runs_become_results_json_with_the_shared_keys(tmp_path):
    module = script_module()
    for name in module.LISTS:
        distinct = "content" if name == "content" else "wording"
        await evaluate(tmp_path / f"eval-{name}-sft", engine_answering(3), distinct)
        for seed in (0, 1):
            await evaluate(tmp_path / f"eval-{name}-s{seed}" / "rl", engine_answering(1 + seed), distinct)
    results = module.collect(tmp_path, [0, 1])
    assert all(RUN_KEYS <= set(run) for run in results["runs"]) and len(results["runs"]) == 2 * 2 * 3
    assert all(COMPARISON_KEYS <= set(c) for c in results["comparisons"])
    pooled = [c for c in results["comparisons"] if c["seeds"] == [0, 1] and c["metric"] == "accuracy"]
    assert len(pooled) == 4 and all(c["diff"] > 0 for c in pooled)  # seed 0 answers all, seed 1 half, SFT a third
    assert "| 200 distinct sums | asyncthink |" in module.markdown(results)


@pytest.mark.skipif(not RESULTS.exists(), reason="no shipped results.json")
def test_the_docs_table_is_the_one_results_json_gives():
    table = script_module().markdown(json.loads(RESULTS.read_text()))
    assert table in (REPO / "docs" / "math-rl.md").read_text()

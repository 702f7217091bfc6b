"""End to end: small evaluations of the tiny model on real vLLM, in process and as two clients of its server.

The tiny model is random, so the figures are noise; what is checked is that
every output is written from real engine episodes and that a rerun into the
same directory generates nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncthink.engines import Engine
from asyncthink.episode import consistency_problems, read_jsonl
from asyncthink.eval.config import load_eval_config
from asyncthink.eval.harness import run_eval

pytestmark = pytest.mark.slow

TINY = Path(__file__).resolve().parents[1] / "configs" / "eval_tiny.yaml"


class Counting(Engine):
    """Passes requests through to another engine and counts them."""

    def __init__(self, inner: Engine) -> None:
        self.inner, self.kind, self.calls = inner, inner.kind, 0
        self.tokenizer, self.max_model_len = inner.tokenizer, inner.max_model_len

    def generate(self, request):
        self.calls += 1
        return self.inner.generate(request)


async def test_small_eval_writes_everything_and_a_rerun_generates_nothing(vllm_engine, tiny_model_dir, tmp_path):
    cfg = load_eval_config(TINY, [f"engine.model={tiny_model_dir}", "max_problems=2", "samples=2", "budgets=[16, 32]",
                                  "runtime.max_worker_tokens=12", "runtime.prompts.style=compact", "bootstrap=100"])
    engine = Counting(vllm_engine)
    summary = await run_eval(cfg, tmp_path, engine=engine, progress=False)
    assert summary["meta"]["new_episodes"] == 2 * 2 * 3 * 4 and engine.calls >= 48

    records = sorted((tmp_path / "records").rglob("*.jsonl"))
    assert [p.relative_to(tmp_path / "records").as_posix() for p in records] == [
        f"{task}/{mode}-{b}.jsonl"
        for task in ("countdown", "sudoku4")
        for mode in ("asyncthink", "parallel", "sequential")
        for b in (16, 32)
    ]
    for path in records:
        eps = list(read_jsonl(path))
        assert len(eps) == 4 and all(consistency_problems(ep) == [] for ep in eps)
        assert all(ep.metrics["total_tokens"] > 0 and ep.status != "error" for ep in eps)
    for name in ("config.yaml", "summary.json", "report.md", "plots/accuracy_vs_latency.png",
                 "plots/latency_distribution.png", "plots/timeline_countdown.png", "plots/timeline_sudoku4.png",
                 "episodes/countdown.html", "episodes/sudoku4.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert all(r["complete"] and r["latency_mean"] > 0 for r in summary["results"])
    assert "| AsyncThink 32 |" in (tmp_path / "report.md").read_text()

    engine.calls = 0
    again = await run_eval(cfg, tmp_path, engine=engine, progress=False)
    assert engine.calls == 0 and again["meta"]["new_episodes"] == 0
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert [r["accuracy"] for r in saved["results"]] == [r["accuracy"] for r in summary["results"]]
    assert [r["latency_mean"] for r in saved["results"]] == [r["latency_mean"] for r in summary["results"]]


async def test_eval_over_two_processes_as_clients_of_one_vllm_server(vllm_server, tiny_model_dir, tmp_path):
    """``processes=2``: each run's episodes shared by two children, each a client of the one real server."""
    cfg = load_eval_config(TINY, ["engine.kind=openai", f"engine.base_urls=['{vllm_server}']",
                                  f"engine.model={tiny_model_dir}", "processes=2", "max_problems=2", "samples=2",
                                  "budgets=[16]", "modes=[asyncthink]", "runtime.max_worker_tokens=12",
                                  "bootstrap=100", "plots=false"])
    summary = await run_eval(cfg, tmp_path, progress=False)
    assert summary["meta"]["new_episodes"] == 2 * 2 * 2  # each run spawns its two children: one mode is enough
    for path in sorted((tmp_path / "records").rglob("*.jsonl")):
        eps = list(read_jsonl(path))
        assert sorted(ep.episode_id for ep in eps) == sorted({ep.episode_id for ep in eps}) and len(eps) == 4
        assert all(ep.metrics["total_tokens"] > 0 and ep.status != "error" for ep in eps)
    assert (await run_eval(cfg, tmp_path, progress=False))["meta"]["new_episodes"] == 0

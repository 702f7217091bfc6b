"""Every benchmark at its smallest size: it runs through its own entry point, its figures are finite, and its
episodes' status counts add up to the episodes it ran.

The benchmarks are scripts, not part of the package; they are imported from ``benchmarks/`` by module name
(the repository root is on ``sys.path`` in the test session), so a refactor that breaks one fails here. Those
that need a real engine borrow the session's tiny-model engines and server (``tests/conftest.py``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterator
from typing import Any

import pytest


def bench(name: str) -> Any:
    return importlib.import_module(f"benchmarks.{name}")


def numbers(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """Every number inside nested dicts and lists, with where it sits."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from numbers(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for k, v in enumerate(value):
            yield from numbers(v, f"{path}[{k}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, float(value)


def assert_finite(figures: Any, skip: tuple[str, ...] = ()) -> None:
    bad = [(p, v) for p, v in numbers(figures) if not math.isfinite(v) and not p.endswith(skip)]
    assert not bad, bad


def assert_counted(statuses: dict[str, int], episodes: int) -> None:
    assert statuses and all(isinstance(k, str) for k in statuses), statuses
    assert sum(statuses.values()) == episodes, (statuses, episodes)


async def test_runtime_overhead() -> None:
    mod = bench("runtime_overhead")
    args = mod.parse_args(["--d-ms", "2", "--sizes", "2", "--cpu-size", "2", "--cpu-forks", "1", "--per-delta", "4",
                           "--repeats", "1", "--deltas", "50", "--forks", "1", "--worker-len", "4", "--org-len", "4",
                           "--processes", "1"])
    out = await mod.main(args)
    assert_finite(out)
    assert {r["delivery"] for r in out["wall"]} == {"push", "pull", "push/1p"}
    for row in out["wall"]:
        assert_counted(row["statuses"], row["size"])
    assert len(out["cpu"]) == len(mod.PATHS)
    for row in out["cpu"]:
        assert_counted(row["statuses"], row["episodes"])
    assert set(out["delta"]["us_per_token"]) == {1, 8}
    assert_counted(out["delta"]["statuses"], 2 * args.repeats)


def check_serve_rows(rows: list[dict[str, Any]], workloads: int, clients: int, requests: int) -> None:
    assert len(rows) == workloads * 3  # direct, json and stream for each workload
    for row in rows:
        assert row["errors"] == 0 and row["n"] == max(requests, 4 * clients)
        assert_counted(row["statuses"], row["n"])
        # no stream, no first content chunk: ttft is NaN by design off the stream path
        assert_finite(row, skip=() if row["path"] == "stream" else ("ttft50",))


async def test_serve_throughput_scripted() -> None:
    mod = bench("serve_throughput")
    rows = await mod.main(mod.parse_args(["--engines", "scripted", "--clients", "1", "--requests", "2"]))
    check_serve_rows(rows, len(mod.WORKLOADS["scripted"]), 1, 2)
    assert all(r["statuses"] == {"ok": r["n"]} for r in rows)  # the scripted episodes are all well formed


@pytest.mark.slow
async def test_serve_throughput_vllm(vllm_engine) -> None:
    mod = bench("serve_throughput")
    rows = await mod.main(mod.parse_args(["--engines", "vllm", "--clients", "1", "--requests", "1"]),
                          engines={"vllm": vllm_engine})
    check_serve_rows(rows, len(mod.WORKLOADS["vllm"]), 1, 1)


@pytest.mark.slow
async def test_engine_throughput(vllm_engine, hf_engine, vllm_server, tiny_model_dir) -> None:
    """No episodes here, only requests: every engine's tokens/s at each concurrency, finite and above zero. The
    HTTP engine is built by the benchmark itself, on the session's server."""
    mod = bench("engine_throughput")
    args = mod.parse_args(["--model", str(tiny_model_dir), "--tokens", "4", "--concurrency", "1", "2",
                           "--engines", "vllm", "openai", "hf", "--url", vllm_server])
    out = await mod.main(args, engines={"vllm": vllm_engine, "hf": hf_engine})
    assert set(out) == {"vllm", "openai", "hf"} and all(set(r) == {1, 2} for r in out.values())
    assert_finite(out)
    assert all(tps > 0 for r in out.values() for tps in r.values())


@pytest.mark.slow
async def test_runtime_vllm(vllm_engine) -> None:
    """On the session's tiny random model (most episodes end in format errors; what counts here is that they are
    counted), not the shipped organizer the benchmark loads by default."""
    mod = bench("runtime_vllm")
    args = mod.parse_args(["--episodes", "2", "--rounds", "2", "--single", "1"])
    out = await mod.main(args, engine=vllm_engine)
    assert_finite(out)
    assert_counted(out["many"]["statuses"], args.episodes * args.rounds)
    assert_counted(out["single"]["statuses"], 2 * args.single)  # each problem sequential and AsyncThink


@pytest.mark.slow
def test_rl_throughput(tiny_model_dir) -> None:
    """One RL step of a group of two on one prompt, ours and TRL's, both rolling out on the transformers engine
    (rolling out on vLLM is ``train_rl``'s own path, tested in ``tests/test_rl.py``)."""
    mod = bench("rl_throughput")
    args = mod.parse_args(["--model", str(tiny_model_dir), "--steps", "1", "--runs", "ours-hf", "trl-hf", "--set",
                           "group_size=2", "prompts_per_step=1", "dataset_size=4", "runtime.max_organizer_tokens=16",
                           "runtime.max_worker_tokens=8"])
    out = mod.main(args)
    assert len(out) == 2
    for figures in out.values():
        assert_finite(figures)
        assert_counted({k: v for k, v in figures["status"].items() if v}, 2)  # one step: one group of two

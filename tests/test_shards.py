"""``run_sharded``: a batch split over child processes gives the records one process gives, in item order,
each seen by ``on_episode`` as it ends; a child that cannot start its engine is a clear error, and a
cancelled batch leaves no child running."""

from __future__ import annotations

import asyncio
import functools

import pytest

from asyncthink.batch import make_items, run_batch
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.shards import ShardError, ShardSpec, run_sharded
from tests.fakes import ScriptedEngine

SCRIPTS = {f"q{n}": f"plan <FORK-1>s{n}</FORK-1> think <JOIN-1><ANSWER>{n}</ANSWER>" for n in range(10)}
SCRIPTS |= {f"s{n}": f"work {n} <RETURN>r{n}</RETURN>" for n in range(10)}
SLOW = {"q": "<FORK-1>s</FORK-1>" + "t" * 400 + "<JOIN-1><ANSWER>1</ANSWER>", "s": "w<RETURN>r</RETURN>"}
RUNTIME = RuntimeConfig(capacity=2, max_organizer_tokens=1000)


def scripted_engine(scripts: dict[str, str], delay_s: float = 0.0) -> ScriptedEngine:
    return ScriptedEngine(scripts, delay_s=delay_s)


def failing_engine() -> ScriptedEngine:
    raise OSError("no engine at http://127.0.0.1:1")


def rows(ep) -> tuple:
    return ep.episode_id, ep.status, ep.answer, tuple((r.row_id, tuple(r.completion_ids), r.text) for r in ep.rows)


async def test_shards_give_the_records_of_one_process_in_item_order():
    items = make_items([{"id": f"p{n}", "question": f"q{n}"} for n in range(10)], samples=2)
    alone = await run_batch(EpisodeExecutor(scripted_engine(SCRIPTS), RUNTIME), items, progress=False)
    seen = []
    spec = ShardSpec(functools.partial(scripted_engine, SCRIPTS), RUNTIME, max_in_flight=4)
    sharded = await run_sharded(spec, items, processes=3, on_episode=seen.append)
    assert [ep.episode_id for ep in sharded] == [item.episode_id for item in items]
    assert [rows(ep) for ep in sharded] == [rows(ep) for ep in alone]
    assert {ep.status for ep in sharded} == {"ok"} and sorted(ep.episode_id for ep in seen) == sorted(
        item.episode_id for item in items)


async def test_a_child_whose_engine_fails_is_a_clear_error():
    items = make_items([{"id": "p0", "question": "q0"}])
    with pytest.raises(ShardError, match="OSError: no engine at http://127.0.0.1:1"):
        await run_sharded(ShardSpec(failing_engine, RUNTIME), items, processes=2)


async def test_a_cancelled_batch_leaves_no_child_running():
    import multiprocessing

    items = make_items([{"id": "p", "question": "q"}], samples=4)
    spec = ShardSpec(functools.partial(scripted_engine, SLOW, 0.05), RUNTIME)
    batch = asyncio.create_task(run_sharded(spec, items, processes=2))
    await asyncio.sleep(3.0)  # the children are up and streaming (400 tokens at 50 ms each)
    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch
    assert [p for p in multiprocessing.active_children() if p.name.startswith("asyncthink-shard")] == []


async def test_a_child_killed_mid_batch_is_a_clear_error():
    import multiprocessing
    import os
    import signal

    items = make_items([{"id": "p", "question": "q"}], samples=4)
    batch = asyncio.create_task(run_sharded(ShardSpec(functools.partial(scripted_engine, SLOW, 0.05), RUNTIME),
                                            items, processes=2))
    await asyncio.sleep(3.0)
    victim = next(p for p in multiprocessing.active_children() if p.name == "asyncthink-shard-1")
    os.kill(victim.pid, signal.SIGKILL)
    with pytest.raises(ShardError, match="shard 1 failed: exited with code -9"):
        await asyncio.wait_for(batch, 30)
    assert [p for p in multiprocessing.active_children() if p.name.startswith("asyncthink-shard")] == []


@pytest.mark.slow
async def test_shards_as_clients_of_one_vllm_server(vllm_server, tiny_model_dir):
    """The serving setup: every child an OpenAI-compatible client of the one real vLLM server."""
    from asyncthink.engines import EngineConfig, build_engine

    engine = functools.partial(build_engine, EngineConfig(kind="openai", base_urls=[vllm_server],
                                                          tokenizer=str(tiny_model_dir)))
    items = make_items([{"id": f"p{n}", "question": f"What is {n} + {n}?"} for n in range(6)], samples=2)
    runtime = RuntimeConfig(capacity=3, max_organizer_tokens=48, max_worker_tokens=24)
    episodes = await run_sharded(ShardSpec(engine, runtime, max_in_flight=6), items, processes=2)
    assert [ep.episode_id for ep in episodes] == [item.episode_id for item in items]
    assert "error" not in {ep.status for ep in episodes}  # a random model breaks the format, never the engine
    assert all(ep.rows[0].completion_ids and ep.rows[0].requests for ep in episodes)

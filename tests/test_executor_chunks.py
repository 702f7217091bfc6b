"""The executor gives the same record whether the engine streams one token per delta or coalesces many.

vLLM merges a request's outputs when its consumer lags, so a delta may hold
many tokens, a join tag among them; whatever the chunking, the record must be
the same. Scripted episodes, valid and broken, run both ways must produce
identical records, token for token.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from asyncthink.episode import Episode
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig
from tests.fakes import ScriptedEngine

WORKERS = {"s1": "a<b c<RETURN>r1</RETURN>", "s2": "long " * 9 + "<RETURN>r2</RETURN>", "s3": "<RETURN></RETURN>"}
PIECES = [
    "think ", "a<b ", "x < y ", "<FORK-1>s1</FORK-1>", "<FORK-2>s2</FORK-2>", "<FORK-3>s3</FORK-3>",
    "<JOIN-1>", "<JOIN-2>", "<JOIN-3>", "<ANSWER>42</ANSWER>", "<ANSWER>a<b</ANSWER>", "<FORK-x>", "</FORK-3>",
    "<FORK-2>s", "é€", "<FO", "RK-9>",
]


def record(ep: Episode) -> tuple:
    rows = tuple((r.row_id, tuple(r.prompt_ids), tuple(r.completion_ids), tuple(r.completion_mask),
                  tuple(r.logprobs), tuple((e.kind, e.index, e.position, e.child) for e in r.events),
                  tuple((s.start, s.end, s.finish_reason) for s in r.requests), r.finish_reason, r.returned, r.text)
                 for r in sorted(ep.rows, key=lambda r: r.row_id))
    return ep.status, ep.answer, tuple(ep.error_codes), rows


async def run(script: str, tokens_per_delta: int) -> Episode:
    engine = ScriptedEngine({"Q": script, **WORKERS}, tokens_per_delta=tokens_per_delta)
    ep = await EpisodeExecutor(engine, RuntimeConfig(capacity=4, max_organizer_tokens=400)).run(
        {"question": "Q", "id": "p"})
    assert engine.live == 0
    return ep


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=12), st.integers(2, 40))
async def test_coalesced_deltas_give_the_same_record(pieces, chunk):
    script = "".join(pieces)
    one, many = await run(script, 1), await run(script, chunk)
    assert record(many) == record(one)


async def test_a_well_formed_episode_is_the_same_in_one_delta():
    script = "plan <FORK-1>s1</FORK-1><FORK-2>s2</FORK-2> think a<b <JOIN-2> then <JOIN-1> <ANSWER>42</ANSWER>"
    one, whole = await run(script, 1), await run(script, 10_000)
    assert one.status == "ok" and one.answer == "42" and record(whole) == record(one)

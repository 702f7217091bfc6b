"""Joins written as text: one stop string for every index, the index read in a short follow-up request.

A stock vLLM server refuses more than 4 stop strings (``VLLM_MAX_STOP_STRINGS``). The engine here
enforces the same cap and a tokenizer holds only some (or none) of the join tags as tokens, so an
episode with joins at index 1 (maybe a token) and 12 (text) exercises both stop kinds.
"""

from __future__ import annotations

import re

import pytest

from asyncthink.engines import EngineError, EngineErrorKind
from asyncthink.episode import EpisodeStatus
from asyncthink.executor import EpisodeExecutor
from asyncthink.protocol import JOIN_PREFIX, ProtocolParser, protocol_tags
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.tags import ProtocolTokens
from tests.fakes import EOS, CharTokenizer, ScriptedEngine

MAX_STOP_STRINGS = 4  # vLLM 0.32's default VLLM_MAX_STOP_STRINGS
SCRIPT = {
    "Q": "plan <FORK-1>s1</FORK-1> and <FORK-12>s2</FORK-12> then <JOIN-12> and <JOIN-1> so <ANSWER>42</ANSWER>",
    "s1": "a<RETURN>r1</RETURN>",
    "s2": "bb<RETURN>r2</RETURN>",
}


class TextTagTokenizer(CharTokenizer):
    """A character tokenizer that holds ``<JOIN-i>`` as one token only for ``i <= token_joins``."""

    def __init__(self, token_joins: int) -> None:
        super().__init__()
        self.specials = [EOS] + [t for t in protocol_tags(16)
                                 if not t.startswith(JOIN_PREFIX) or int(t[len(JOIN_PREFIX):-1]) <= token_joins]
        self.special_ids = {t: 1 + i for i, t in enumerate(self.specials)}
        self.by_id = {i: t for t, i in self.special_ids.items()}
        self._pattern = re.compile("|".join(re.escape(t) for t in sorted(self.specials, key=len, reverse=True)))


class CappedEngine(ScriptedEngine):
    """Continues each row's script from wherever its text stands; refuses more stop strings than vLLM."""

    def __init__(self, scripts: dict[str, str], token_joins: int) -> None:
        super().__init__(scripts)
        self.tokenizer = TextTagTokenizer(token_joins)
        self.stop_strings: list[tuple[str, ...]] = []

    async def generate(self, request):
        self.stop_strings.append(request.sampling.stop)
        if len(request.sampling.stop) > MAX_STOP_STRINGS:
            raise EngineError(EngineErrorKind.BAD_REQUEST, f"at most {MAX_STOP_STRINGS} stop strings")
        async for delta in super().generate(request):
            yield delta


@pytest.mark.parametrize("token_joins", [0, 8, 16], ids=["all-text", "partly-tokens", "all-tokens"])
async def test_text_joins_need_one_stop_string_and_resume_exactly(token_joins):
    engine = CappedEngine(SCRIPT, token_joins)
    ep = await EpisodeExecutor(engine, RuntimeConfig(capacity=16, max_forks=16)).run({"question": "Q"}, seed=3)
    assert ep.status == EpisodeStatus.OK, (ep.error, ep.format_errors)
    assert ep.answer == "42" and [e.index for e in ep.organizer.events if e.kind == "join"] == [12, 1]
    org = ep.organizer
    assert org.text.startswith(SCRIPT["Q"].split("<JOIN-12>")[0] + "<JOIN-12>r2</JOIN-12> and <JOIN-1>")
    assert max(len(s) for s in engine.stop_strings) <= 2
    text_joins = 2 - (token_joins >= 1) - (token_joins >= 12)
    assert len(org.requests) == 3 + text_joins  # a join written as text costs one short request for its index
    assert [r.finish_reason for r in org.requests].count("stop") == text_joins + 1  # "<JOIN-" stops, then EOS


def test_stops_have_one_join_prefix_whatever_the_number_of_text_tags():
    tags = ProtocolTokens(TextTagTokenizer(token_joins=3), max_index=16)
    ids, strings = tags.organizer_stops(can_fork=True)
    assert strings == (JOIN_PREFIX,) and len(ids) == 1 + 3 + 1  # </ANSWER>, <JOIN-1..3>, EOS
    assert tags.tail_stops((ids, strings)) == (ids, (">",))
    assert ProtocolTokens(TextTagTokenizer(16), 16).organizer_stops(True)[1] == ()


def test_parser_knows_it_stopped_inside_a_join_tag():
    parser = ProtocolParser()
    parser.feed("<FORK-12>x</FORK-12> wait <JOIN-")
    assert parser.inside_join_tag
    parser.feed("1")
    assert parser.inside_join_tag
    parser.feed("2>")
    assert not parser.inside_join_tag and parser.awaiting_append

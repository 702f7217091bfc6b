"""The protocol parser: one case per format error code, valid episodes, and never-raise properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncthink.protocol import (
    AnswerEvent,
    ForkEvent,
    FormatError,
    FormatErrorCode,
    JoinEvent,
    ParserConfig,
    PoolPolicy,
    ProtocolParser,
    ReturnEvent,
    Role,
    join_stop_strings,
    protocol_tags,
    validate_text,
)

C = FormatErrorCode
ORG = ParserConfig(role=Role.ORGANIZER, capacity=3)
WORKER = ParserConfig(role=Role.WORKER, allow_fork=False)


def codes(text: str, cfg: ParserConfig = ORG) -> list[str]:
    return [str(e.code) for e in validate_text(text, cfg) if isinstance(e, FormatError)]


ERROR_CASES = [
    (
        "duplicate_fork_active",
        "<FORK-1>a</FORK-1><FORK-1>b</FORK-1><JOIN-1>r</JOIN-1><ANSWER>1</ANSWER>",
        ORG,
        C.DUPLICATE_FORK,
    ),
    (
        "duplicate_fork_reuse",
        "<FORK-1>a</FORK-1><JOIN-1>r</JOIN-1><FORK-1>b</FORK-1><JOIN-1>r</JOIN-1><ANSWER>1</ANSWER>",
        ORG,
        C.DUPLICATE_FORK,
    ),
    ("pool_overflow", "<FORK-1>a</FORK-1><FORK-2>b</FORK-2><FORK-3>c</FORK-3>", ORG, C.POOL_OVERFLOW),
    ("join_unknown", "<JOIN-4>x</JOIN-4><ANSWER>1</ANSWER>", ORG, C.JOIN_UNKNOWN),
    ("join_twice", "<FORK-1>a</FORK-1><JOIN-1>r</JOIN-1><JOIN-1>r</JOIN-1><ANSWER>1</ANSWER>", ORG, C.JOIN_TWICE),
    ("malformed_bad_index", "<FORK-x>a<ANSWER>1</ANSWER>", ORG, C.MALFORMED_TAG),
    ("malformed_zero_index", "<FORK-0>a</FORK-0><ANSWER>1</ANSWER>", ORG, C.MALFORMED_TAG),
    ("malformed_unterminated_fork", "<FORK-1>never closed", ORG, C.MALFORMED_TAG),
    ("malformed_stray_close", "</FORK-3><ANSWER>1</ANSWER>", ORG, C.MALFORMED_TAG),
    ("malformed_nested_in_fork", "<FORK-1>a<FORK-2>b</FORK-2></FORK-1>", ORG, C.MALFORMED_TAG),
    ("malformed_join_in_answer", "<FORK-1>a</FORK-1><ANSWER><JOIN-1>r</JOIN-1></ANSWER>", ORG, C.MALFORMED_TAG),
    ("malformed_join_without_return", "<FORK-1>a</FORK-1><JOIN-1>", ORG, C.MALFORMED_TAG),
    ("worker_no_return", "I thought hard but returned nothing", WORKER, C.WORKER_NO_RETURN),
    ("worker_unterminated_return", "<RETURN>half", WORKER, C.WORKER_NO_RETURN),
    ("no_answer", "just thinking", ORG, C.NO_ANSWER),
    ("no_answer_unterminated", "<ANSWER>42", ORG, C.NO_ANSWER),
    ("unjoined_worker", "<FORK-1>a</FORK-1><ANSWER>1</ANSWER>", ORG, C.UNJOINED_WORKER),
    ("nested_fork", "<FORK-1>sub</FORK-1><RETURN>x</RETURN>", WORKER, C.NESTED_FORK),
]


@pytest.mark.parametrize("name,text,cfg,code", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_each_error_code(name, text, cfg, code):
    assert str(code) in codes(text, cfg)


def test_every_code_but_budget_has_a_case():
    covered = {c[3] for c in ERROR_CASES}
    assert covered == set(FormatErrorCode) - {FormatErrorCode.BUDGET_EXCEEDED}  # budgets are the runtime's


VALID = [
    ("no_fork", "think 2+2<ANSWER>4</ANSWER>"),
    ("one_fork", "plan <FORK-1>what is 2+2</FORK-1> wait <JOIN-1>4</JOIN-1> so <ANSWER>4</ANSWER>"),
    ("many_forks", "<FORK-1>a</FORK-1><FORK-2>b</FORK-2><JOIN-2>B</JOIN-2><JOIN-1>A</JOIN-1>"
                   "<FORK-3>c</FORK-3><JOIN-3>C</JOIN-3><ANSWER>ABC</ANSWER>"),
    ("interleaved", "x<FORK-1>a</FORK-1>y<JOIN-1>A</JOIN-1>z<FORK-2>b</FORK-2>w<JOIN-2>B</JOIN-2><ANSWER>1</ANSWER>"),
    ("angle_brackets_in_text", "3 < 4 and <b>bold</b> <FOR <ANS<ANSWER>x<y</ANSWER>"),
]


@pytest.mark.parametrize("name,text", VALID, ids=[v[0] for v in VALID])
def test_valid_texts_have_no_errors(name, text):
    assert codes(text) == []


def test_events_of_an_interleaved_organizer():
    events = validate_text(VALID[3][1], ORG)
    kinds = [(type(e).__name__, getattr(e, "index", None)) for e in events]
    assert kinds == [("ForkEvent", 1), ("JoinEvent", 1), ("ForkEvent", 2), ("JoinEvent", 2), ("AnswerEvent", None)]
    assert events[0].subquery == "a" and events[-1].text == "1"


def test_worker_return_and_recursive_worker():
    ev = validate_text("think <RETURN>the takeaway</RETURN>", WORKER)
    assert [type(e) for e in ev] == [ReturnEvent] and ev[0].text == "the takeaway"
    rec = ParserConfig(role=Role.WORKER, allow_fork=True, capacity=2)
    assert codes("<FORK-1>s</FORK-1><JOIN-1>r</JOIN-1><RETURN>x</RETURN>", rec) == []


def test_index_reuse_after_join_when_allowed():
    cfg = ParserConfig(capacity=2, allow_index_reuse=True)
    assert (
        codes("<FORK-1>a</FORK-1><JOIN-1>r</JOIN-1><FORK-1>b</FORK-1><JOIN-1>r</JOIN-1><ANSWER>1</ANSWER>", cfg) == []
    )


def test_wait_policy_has_no_overflow_and_unjoined_can_be_ignored():
    cfg = ParserConfig(capacity=2, pool_policy=PoolPolicy.WAIT, unjoined_is_error=False)
    assert codes("<FORK-1>a</FORK-1><FORK-2>b</FORK-2><ANSWER>1</ANSWER>", cfg) == []


def test_streaming_join_then_feed_appended_ignores_tags_in_return():
    p = ProtocolParser(ORG)
    ev = p.feed("<FORK-1>q</FORK-1> hm <JOIN-1>")
    assert isinstance(ev[-1], JoinEvent) and p.awaiting_append
    assert p.feed_appended("a return with <FORK-9> inside</JOIN-1>") == []
    p.feed("<ANSWER>7</ANSWER>")
    assert not [e for e in p.finish() if isinstance(e, FormatError)]
    assert p.answers == ["7"]


def test_feed_appended_without_pending_join_is_an_error():
    p = ProtocolParser(ORG)
    assert isinstance(p.feed_appended("x</JOIN-1>")[0], FormatError)


def test_tags_and_stops():
    tags = protocol_tags(2)
    assert "<FORK-2>" in tags and "</JOIN-1>" in tags and "<ANSWER>" in tags and len(tags) == 4 + 8
    assert join_stop_strings(3) == ["<JOIN-1>", "<JOIN-2>", "<JOIN-3>"]


# ------------------------------------------------------------ properties

_ALPHABET = st.sampled_from(
    ["<", ">", "/", "-", "1", "2", "0", "FORK", "JOIN", "ANSWER", "RETURN", "<FORK-1>", "</FORK-1>", "<JOIN-1>",
     "</JOIN-1>", "<ANSWER>", "</ANSWER>", "<RETURN>", "</RETURN>", "<FORK-2>", "</FORK-2>", " ", "x", "é", "\n"]
)
_TEXTS = st.one_of(st.text(max_size=200), st.lists(_ALPHABET, max_size=60).map("".join))
_CONFIGS = st.sampled_from([ORG, WORKER, ParserConfig(capacity=2, pool_policy=PoolPolicy.WAIT)])


@settings(max_examples=2000, deadline=None)
@given(text=_TEXTS, cfg=_CONFIGS)
def test_parser_never_raises(text, cfg):
    p = ProtocolParser(cfg)
    p.feed(text)
    p.feed_appended("x</JOIN-1>")
    p.finish()


@settings(max_examples=1000, deadline=None)
@given(text=_TEXTS, cfg=_CONFIGS, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_chunking_gives_the_same_events(text, cfg, cuts):
    whole = validate_text(text, cfg)
    p = ProtocolParser(cfg)
    bounds = [0, *sorted(c for c in cuts if c <= len(text)), len(text)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        p.feed(text[a:b])
    p.finish()
    assert p.events == whole


def test_one_character_at_a_time_matches_whole():
    text = VALID[2][1]
    p = ProtocolParser(ORG)
    for ch in text:
        p.feed(ch)
    p.finish()
    assert p.events == validate_text(text, ORG)
    assert [type(e) for e in p.events].count(ForkEvent) == 3
    assert isinstance(p.events[-1], AnswerEvent)


def test_text_after_a_join_tag_in_the_same_token_stays_generated_text():
    """A BPE token like '>\\n' completes <JOIN-1> and carries more text; the appended return follows it."""
    p = ProtocolParser(ORG)
    events = p.feed("<FORK-1>x</FORK-1> <JOIN-1>\n")
    assert [type(e).__name__ for e in events] == ["ForkEvent", "JoinEvent"]
    assert p.feed_appended("r</JOIN-1>") == []
    events = p.feed(" so <ANSWER>1</ANSWER>") + p.finish()
    assert [type(e).__name__ for e in events] == ["AnswerEvent"] and p.answers == ["1"]

"""Episode records: lossless JSON Lines round trip, schema version, consistency checks."""

from __future__ import annotations

import json

import pytest

from asyncthink.episode import (
    Episode,
    EpisodeStatus,
    RequestSpan,
    RowFormatError,
    consistency_problems,
    read_jsonl,
    write_jsonl,
)
from asyncthink.protocol import FormatErrorCode
from tests.builders import build_episode


def rich_episode() -> Episode:
    ep = build_episode([("gen", 2), ("fork", 1, 5), ("gen", 3), ("join", 1, 2), ("gen", 1)])
    ep.rows[0].requests = [RequestSpan(0, 5, "stop", 0, 0.0, 0.5), RequestSpan(7, 8, "stop", 128, 0.6, 0.7)]
    ep.rows[0].logprobs[0] = float("-inf")
    ep.rows[1].text = "héllo <RETURN>x</RETURN>"
    ep.status = EpisodeStatus.FORMAT_ERROR
    ep.format_errors = [RowFormatError(FormatErrorCode.NO_ANSWER, "none", "0")]
    ep.metrics = {"latency": 10.0}
    ep.info = {"sampling": {"temperature": 0.7}, "nested": [1, 2]}
    return ep


def test_jsonl_round_trip_is_lossless(tmp_path):
    ep = rich_episode()
    path = tmp_path / "e.jsonl"
    write_jsonl(path, [ep, ep])
    back = list(read_jsonl(path))
    assert back == [ep, ep]
    assert back[0].rows[0].role == ep.rows[0].role and back[0].format_errors[0].code == FormatErrorCode.NO_ANSWER


def test_wrong_schema_version_is_a_clear_error(tmp_path):
    d = rich_episode().to_dict()
    d["schema_version"] = 99
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(d) + "\n")
    with pytest.raises(ValueError, match="bad.jsonl:1.*schema_version 99"):
        list(read_jsonl(path))


def test_consistency_problems_found():
    ep = rich_episode()
    assert consistency_problems(ep) == []
    ep.rows[1].completion_mask.append(1)
    ep.rows[0].events[0].position = 999
    problems = consistency_problems(ep)
    assert any("lengths" in p for p in problems) and any("outside" in p for p in problems)

"""What a finished episode looks like to a client: text, finish reason, usage and the ``asyncthink`` field.

- **text**: the organizer's final text, exactly as its context reads: what it
  generated, with each worker's returned text appended after ``<JOIN-i>``
  (the runtime's ``{returned}</JOIN-i>``); the end-of-sequence token is left
  out. In parallel mode, the text of the first trace that gave the winning
  answer (trace ``t0`` when no trace answered). The answer alone is
  ``asyncthink.answer``.
- **finish_reason**: ``length`` when a budget ended the episode (tokens,
  forks, depth or wall time), else ``stop``, including for format errors:
  ``asyncthink.status`` and ``asyncthink.format_errors`` say what went wrong.
  A random or undertrained model mostly ends in format errors; it still gets
  a 200 with whatever the organizer wrote.
- **usage**: ``completion_tokens`` counts every generated token of every row
  (organizer, workers, traces); ``prompt_tokens`` counts each row's prompt once
  plus the returned text appended at joins (resumed requests re-send the
  context, but the engine serves it from its prefix cache).
"""

from __future__ import annotations

from typing import Any

from asyncthink.episode import Episode, EpisodeStatus, EventKind, Row
from asyncthink.protocol import ANSWER_CLOSE, ANSWER_OPEN, RETURN_CLOSE, RETURN_OPEN

_COUNTS = ("forks", "joins", "organizer_tokens", "worker_tokens", "total_tokens", "max_depth")


def answer_row(ep: Episode) -> Row | None:
    """The row whose text is the response: the organizer, or in parallel mode the winning trace."""
    if not ep.rows:
        return None
    if not ep.mode.spec.traces or ep.answer is None:
        return ep.rows[0]
    tagged = f"{ANSWER_OPEN}{ep.answer}{ANSWER_CLOSE}"
    return next((r for r in ep.rows if r.parent is None and tagged in r.text), ep.rows[0])


def response_text(ep: Episode, eos: str | None) -> str:
    row = answer_row(ep)
    return strip_eos(row.text, eos) if row is not None else ""


def strip_eos(text: str, eos: str | None) -> str:
    return text[: -len(eos)] if eos and text.endswith(eos) else text


def finish_reason(ep: Episode) -> str:
    return "length" if ep.status == EpisodeStatus.BUDGET_EXCEEDED else "stop"


def usage(ep: Episode) -> dict[str, int]:
    completion = sum(r.generated_tokens for r in ep.rows)
    prompt = sum(len(r.prompt_ids) + r.appended_tokens for r in ep.rows)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def summary(ep: Episode) -> dict[str, Any]:
    """The ``asyncthink`` field: how the episode went, its metrics, and every worker's sub-query and return."""
    m = ep.metrics
    out: dict[str, Any] = {
        "episode_id": ep.episode_id, "mode": ep.mode, "capacity": ep.capacity, "status": str(ep.status),
        "answer": ep.answer, "error": ep.error,
        "format_errors": [{"code": str(e.code), "detail": e.detail, "row_id": e.row_id} for e in ep.format_errors],
        **{k: int(m.get(k, 0)) for k in _COUNTS},
        **_row_tokens(ep),
        "latency": m.get("latency", 0.0), "eta": m.get("eta", 0.0),
        "eta_over_capacity": m.get("eta_over_capacity", 0.0), "wall_s": round(ep.wall_s, 6),
        "workers": [_worker(ep, r) for r in ep.rows if r.parent is not None],
    }
    if "votes" in ep.info:
        out["votes"] = ep.info["votes"]
    return out


def _row_tokens(ep: Episode) -> dict[str, int]:
    """Generated tokens of the top rows (the organizer, or every parallel trace) and of the workers, from the rows
    themselves, so they add up to ``total_tokens`` in every mode."""
    top = sum(r.generated_tokens for r in ep.rows if r.parent is None)
    return {"organizer_tokens": top, "worker_tokens": sum(r.generated_tokens for r in ep.rows) - top}


def _worker(ep: Episode, row: Row) -> dict[str, Any]:
    parent = ep.row(row.parent) if row.parent else None
    joined = parent is not None and any(e.child == row.row_id and e.kind == EventKind.JOIN for e in parent.events)
    return {
        "row_id": row.row_id, "parent": row.parent, "index": row.fork_index, "subquery": row.subquery,
        "returned": returned_text(row), "tokens": row.generated_tokens, "finish_reason": row.finish_reason,
        "joined": joined,
    }


def returned_text(row: Row) -> str | None:
    """The worker's takeaway: the text of its last ``<RETURN>...</RETURN>``, or None if it never returned."""
    end = row.text.rfind(RETURN_CLOSE)
    start = row.text.rfind(RETURN_OPEN, 0, end) if end >= 0 else -1
    return row.text[start + len(RETURN_OPEN): end] if start >= 0 else None

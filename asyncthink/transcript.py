"""A row's text as pieces: generated text, forks (with their worker) and joins (with what came back).

Works from the record alone, without the model's tokenizer: the stored text
of a row is its completion decoded, and the runtime appended exactly
``{returned}</JOIN-i>`` after each ``<JOIN-i>``, where ``returned`` is the
joined worker's ``<RETURN>`` text. Forks and joins are matched, in order, to
the row's fork and join events, which name the worker row. Concatenating the
``raw`` of every piece gives back the row's text exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from asyncthink.episode import Episode, EventKind, Row, RowEvent
from asyncthink.protocol import join_close

_TAG = re.compile(r"<FORK-(\d+)>(.*?)</FORK-\1>|<JOIN-(\d+)>", re.S)


@dataclass(frozen=True)
class Piece:
    """A stretch of a row's text."""

    kind: str  # "text" | "fork" | "join"
    raw: str  # the exact text of the stretch, tags included
    text: str  # "text": the text; "fork": the sub-query; "join": the returned text
    index: int | None = None
    child: str | None = None  # the worker's row id (forks and joins)
    wait_s: float = 0.0  # joins: seconds the row blocked waiting for the worker


def returned_text(row: Row) -> str:
    """The worker's takeaway, as the executor recorded it ("" if it returned nothing)."""
    return row.returned or ""


def pieces(ep: Episode, row: Row) -> list[Piece]:
    """The row's text split at its forks and joins."""
    forks = [e for e in row.events if e.kind == EventKind.FORK]
    joins = [e for e in row.events if e.kind == EventKind.JOIN]
    text, out, pos = row.text, [], 0
    while (m := _TAG.search(text, pos)) is not None:
        _add_text(out, text[pos : m.start()])
        if m.group(1) is not None:
            out.append(_fork(m, forks))
            pos = m.end()
        else:
            piece = _join(ep, text, m, joins)
            if piece is None:
                _add_text(out, m.group(0))
                pos = m.end()
            else:
                out.append(piece)
                pos = m.start() + len(piece.raw)
    _add_text(out, text[pos:])
    return out


def _add_text(out: list[Piece], text: str) -> None:
    if text:
        out.append(Piece("text", text, text))


def _next(events: list[RowEvent], index: int) -> RowEvent | None:
    """Take the first remaining event for ``index`` (events are in text order)."""
    for k, e in enumerate(events):
        if e.index == index:
            return events.pop(k)
    return None


def _fork(m: re.Match, forks: list[RowEvent]) -> Piece:
    index = int(m.group(1))
    event = _next(forks, index)
    return Piece("fork", m.group(0), m.group(2), index, event.child if event else None)


def _join(ep: Episode, text: str, m: re.Match, joins: list[RowEvent]) -> Piece | None:
    """The join at ``m`` with the text appended after it; ``None`` if no join event backs it."""
    index = int(m.group(3))
    event = _next(joins, index)
    if event is None:
        return None
    close = join_close(index)
    rest = text[m.end() :]
    expected = _child_return(ep, event.child) + close
    if rest.startswith(expected):
        returned = expected[: -len(close)]
    else:  # the decode of the whole row merged tokens differently; fall back to the closing tag
        end = rest.find(close)
        returned = rest[:end] if end >= 0 else rest
    raw = m.group(0) + returned + (close if rest[len(returned) :].startswith(close) else "")
    return Piece("join", raw, returned, index, event.child, event.wait_s)


def _child_return(ep: Episode, child: str | None) -> str:
    try:
        return returned_text(ep.row(child)) if child else ""
    except KeyError:
        return ""

"""The fork/join protocol: tags, format-error codes, and an incremental parser.

The organizer writes ``<FORK-i>sub-query</FORK-i>`` to start worker ``i`` and
``<JOIN-i>`` to wait for it; the runtime then appends ``{returned text}</JOIN-i>``.
It ends with ``<ANSWER>...</ANSWER>``. A worker ends with ``<RETURN>...</RETURN>``.

``ProtocolParser`` is fed text in arbitrary chunks while a row streams and emits
events (fork, join, answer, return) and format errors with the stable codes of
DESIGN section 2. It never raises on any input, and every chunking of a text
yields the same events as the whole text (events carry character offsets in the
fed stream, so equality is exact). ``validate_text`` is the same logic over a
finished text, where each ``<JOIN-i>`` is followed by the appended return and
``</JOIN-i>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum


class FormatErrorCode(StrEnum):
    """Stable codes for breaches of the protocol (DESIGN section 2)."""

    DUPLICATE_FORK = "duplicate_fork"
    POOL_OVERFLOW = "pool_overflow"
    JOIN_UNKNOWN = "join_unknown"
    JOIN_TWICE = "join_twice"
    MALFORMED_TAG = "malformed_tag"
    WORKER_NO_RETURN = "worker_no_return"
    NO_ANSWER = "no_answer"
    UNJOINED_WORKER = "unjoined_worker"
    NESTED_FORK = "nested_fork"
    BUDGET_EXCEEDED = "budget_exceeded"


class Role(StrEnum):
    """What a row is asked to produce: an organizer answers, a worker returns."""

    ORGANIZER = "organizer"
    WORKER = "worker"


class PoolPolicy(StrEnum):
    """What a fork into a full pool does."""

    ERROR = "error"  # a ``pool_overflow`` format error (the paper's training behaviour)
    WAIT = "wait"  # the worker is queued until a running worker finishes


ANSWER_OPEN, ANSWER_CLOSE = "<ANSWER>", "</ANSWER>"
RETURN_OPEN, RETURN_CLOSE = "<RETURN>", "</RETURN>"
MAX_INDEX_DIGITS = 6
JOIN_PREFIX = "<JOIN-"
"""What every ``<JOIN-i>`` starts with: one stop string for all joins written as text (servers cap stop strings)."""
TAG_END = ">"
"""Ends the index of a join whose request stopped at ``JOIN_PREFIX``."""


def fork_open(index: int) -> str:
    return f"<FORK-{index}>"


def fork_close(index: int) -> str:
    return f"</FORK-{index}>"


def join_open(index: int) -> str:
    return f"<JOIN-{index}>"


def join_close(index: int) -> str:
    return f"</JOIN-{index}>"


def protocol_tags(max_index: int) -> list[str]:
    """Every tag string for indices 1..max_index; tokenizers add these as tokens."""
    tags = [ANSWER_OPEN, ANSWER_CLOSE, RETURN_OPEN, RETURN_CLOSE]
    for i in range(1, max_index + 1):
        tags += [fork_open(i), fork_close(i), join_open(i), join_close(i)]
    return tags


def join_stop_strings(max_index: int) -> list[str]:
    """Stop strings that end an organizer request at a join (indices 1..max_index)."""
    return [join_open(i) for i in range(1, max_index + 1)]


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class ForkEvent:
    """``</FORK-i>`` closed a fork: worker ``index`` should start on ``subquery``."""

    index: int
    subquery: str
    offset: int


@dataclass(frozen=True)
class JoinEvent:
    """``<JOIN-i>`` was written: the row waits for worker ``index``."""

    index: int
    offset: int


@dataclass(frozen=True)
class AnswerEvent:
    """A complete ``<ANSWER>...</ANSWER>``."""

    text: str
    offset: int


@dataclass(frozen=True)
class ReturnEvent:
    """A complete ``<RETURN>...</RETURN>`` written by a worker."""

    text: str
    offset: int


@dataclass(frozen=True)
class FormatError:
    """A breach of the protocol; ``offset`` is where it was detected in the stream."""

    code: FormatErrorCode
    detail: str
    offset: int


Event = ForkEvent | JoinEvent | AnswerEvent | ReturnEvent | FormatError


@dataclass(kw_only=True)
class ParserConfig:
    """What the parser checks for one row."""

    role: Role = Role.ORGANIZER
    """Organizers must answer, workers must return."""
    allow_fork: bool = True
    """Whether this row may fork (organizers; workers only with recursion)."""
    capacity: int | None = None
    """Pool size including the organizer; ``None`` disables the overflow check."""
    pool_policy: PoolPolicy = PoolPolicy.ERROR
    """Under ``wait`` a fork into a full pool is queued by the runtime, not an error."""
    allow_index_reuse: bool = False
    """Allow forking an index again after it was joined."""
    unjoined_is_error: bool = True
    """Whether ending with a forked worker never joined is a format error."""


# ---------------------------------------------------------------- scanner

_TAG_RE = re.compile(r"<(/?)(FORK|JOIN)-([1-9][0-9]{0,5})>|<(/?)(ANSWER|RETURN)>")
_DIGITS = "(-([1-9][0-9]{0,5})?)?"
_PREFIX_RE = re.compile(
    r"</?(F(O(R(K" + _DIGITS + ")?)?)?|J(O(I(N" + _DIGITS + ")?)?)?"
    r"|A(N(S(W(E(R)?)?)?)?)?|R(E(T(U(R(N)?)?)?)?)?)?"
)
_KEYWORD_RE = re.compile(r"</?(FORK|JOIN)")
_MAX_TAG_LEN = len("</RETURN>") + MAX_INDEX_DIGITS


@dataclass(frozen=True)
class _Tag:
    closing: bool
    name: str
    index: int | None
    end: int


class _Mode(StrEnum):
    TEXT = "text"
    FORK_BODY = "fork_body"
    ANSWER_BODY = "answer_body"
    RETURN_BODY = "return_body"
    APPENDED = "appended"


def _scan_tag(buf: str, pos: int, final: bool) -> _Tag | str | int:
    """Classify ``buf[pos:]`` (which starts with '<').

    Returns a ``_Tag``; ``"more"`` if more text is needed to decide; ``"text"``
    if the '<' is plain text; or an ``int`` end offset of a malformed tag.
    """
    m = _TAG_RE.match(buf, pos)
    if m:
        if m.group(2):
            return _Tag(bool(m.group(1)), m.group(2), int(m.group(3)), m.end())
        return _Tag(bool(m.group(4)), m.group(5), None, m.end())
    tail = buf[pos : pos + _MAX_TAG_LEN]
    if not final and _PREFIX_RE.fullmatch(tail):
        return "more"
    k = _KEYWORD_RE.match(buf, pos)
    if k:
        return k.end()
    return "text"


# ---------------------------------------------------------------- parser


@dataclass
class _State:
    mode: _Mode = _Mode.TEXT
    body: list[str] = field(default_factory=list)
    body_index: int | None = None
    body_is_valid_fork: bool = False
    active: set[int] = field(default_factory=set)
    used: set[int] = field(default_factory=set)
    joined: set[int] = field(default_factory=set)
    answers: list[str] = field(default_factory=list)
    returns: list[str] = field(default_factory=list)
    finished: bool = False


class ProtocolParser:
    """Incremental, never-raising parser for one row's text stream."""

    def __init__(self, config: ParserConfig | None = None) -> None:
        self.config = config or ParserConfig()
        self._buf = ""
        self._base = 0  # stream offset of self._buf[0]
        self._s = _State()
        self.events: list[Event] = []

    # -- public API

    @property
    def answers(self) -> list[str]:
        return list(self._s.answers)

    @property
    def returns(self) -> list[str]:
        return list(self._s.returns)

    @property
    def inside_join_tag(self) -> bool:
        """True while the text ends inside an unfinished ``<JOIN-`` tag (a request stopped at ``JOIN_PREFIX``)."""
        return self._s.mode == _Mode.TEXT and self._buf.startswith(JOIN_PREFIX)

    @property
    def at_rest(self) -> bool:
        """True when no tag is half-read: text with no ``<`` fed now can produce no event."""
        return not self._buf and self._s.mode != _Mode.APPENDED and not self._s.finished

    @property
    def awaiting_append(self) -> bool:
        """True right after a ``<JOIN-i>``, until its ``</JOIN-i>`` is seen."""
        return self._s.mode == _Mode.APPENDED

    def feed(self, text: str) -> list[Event]:
        """Consume generated text (or, after a join, the appended return); return new events."""
        if self._s.finished or not text:
            return []
        if self._s.mode == _Mode.TEXT and not self._buf and "<" not in text:
            self._base += len(text)  # plain thinking text: nothing to parse or keep
            return []
        start = len(self.events)
        self._buf += text
        self._scan(final=False)
        return self.events[start:]

    def feed_appended(self, text: str) -> list[Event]:
        """Consume text the runtime appended after a join, without looking for tags in it.

        ``text`` must end with ``</JOIN-i>`` of the pending join; the parser then
        returns to normal text.
        """
        if self._s.mode != _Mode.APPENDED:
            start = len(self.events)
            self._error(FormatErrorCode.MALFORMED_TAG, "appended text without a pending join", 0)
            return self.events[start:]
        # the token that completed <JOIN-i> may carry more text (a BPE ">\n"): it was generated before the
        # appended ids, so it stays plain text of the row
        self._base += len(self._buf) + len(text)
        self._buf = ""
        self._s.mode = _Mode.TEXT
        return []

    def finish(self) -> list[Event]:
        """Signal the end of the row; returns the end-of-row events and errors."""
        if self._s.finished:
            return []
        start = len(self.events)
        self._scan(final=True)
        self._end_of_row_checks()
        self._s.finished = True
        return self.events[start:]

    # -- scanning

    def _scan(self, final: bool) -> None:
        pos = 0
        buf = self._buf
        while pos < len(buf):
            if self._s.mode == _Mode.APPENDED:
                pos = self._scan_appended(buf, pos, final)
                if self._s.mode == _Mode.APPENDED:
                    break
                continue
            lt = buf.find("<", pos)
            if lt < 0:
                self._add_body(buf[pos:])
                pos = len(buf)
                break
            self._add_body(buf[pos:lt])
            found = _scan_tag(buf, lt, final)
            if found == "more":
                pos = lt
                break
            if found == "text":
                self._add_body("<")
                pos = lt + 1
            elif isinstance(found, int):
                self._error(
                    FormatErrorCode.MALFORMED_TAG, f"malformed tag starting {buf[lt:found]!r}", self._base + found
                )
                pos = found
            else:
                pos = found.end
                self._on_tag(found, buf[lt:found.end], self._base + found.end)
        self._base += pos
        self._buf = buf[pos:]

    def _scan_appended(self, buf: str, pos: int, final: bool) -> int:
        close = join_close(self._s.body_index or 0)
        at = buf.find(close, pos)
        if at >= 0:
            self._s.mode = _Mode.TEXT
            return at + len(close)
        if final:
            self._error(FormatErrorCode.MALFORMED_TAG, f"join not closed by {close}", self._base + len(buf))
            self._s.mode = _Mode.TEXT
            return len(buf)
        keep = max(pos, len(buf) - len(close) + 1)  # a partial close tag may straddle chunks
        return keep

    def _add_body(self, text: str) -> None:
        if text and self._s.mode in (_Mode.FORK_BODY, _Mode.ANSWER_BODY, _Mode.RETURN_BODY):
            self._s.body.append(text)

    def _error(self, code: FormatErrorCode, detail: str, offset: int) -> None:
        self.events.append(FormatError(code, detail, offset))

    # -- tag semantics

    def _on_tag(self, tag: _Tag, raw: str, offset: int) -> None:
        mode = self._s.mode
        if mode == _Mode.FORK_BODY:
            self._in_fork_body(tag, raw, offset)
        elif mode in (_Mode.ANSWER_BODY, _Mode.RETURN_BODY):
            self._in_final_body(tag, raw, offset)
        elif tag.name in ("FORK", "JOIN"):
            self._fork_join_tag(tag, raw, offset)
        else:
            self._final_tag(tag, raw, offset)

    def _in_fork_body(self, tag: _Tag, raw: str, offset: int) -> None:
        if tag.name == "FORK" and tag.closing and tag.index == self._s.body_index:
            subquery = "".join(self._s.body)
            if self._s.body_is_valid_fork:
                self._s.active.add(tag.index)
                self._s.used.add(tag.index)
                self.events.append(ForkEvent(tag.index, subquery, offset))
            self._s.mode, self._s.body = _Mode.TEXT, []
        elif tag.name in ("FORK", "JOIN"):
            self._error(FormatErrorCode.MALFORMED_TAG, f"{raw} inside fork {self._s.body_index}", offset)
        else:
            self._add_body(raw)

    def _in_final_body(self, tag: _Tag, raw: str, offset: int) -> None:
        name = "ANSWER" if self._s.mode == _Mode.ANSWER_BODY else "RETURN"
        if tag.name == name and tag.closing:
            text = "".join(self._s.body)
            if name == "ANSWER":
                self._s.answers.append(text)
                self.events.append(AnswerEvent(text, offset))
            else:
                self._s.returns.append(text)
                self.events.append(ReturnEvent(text, offset))
            self._s.mode, self._s.body = _Mode.TEXT, []
        elif tag.name in ("FORK", "JOIN"):
            self._error(FormatErrorCode.MALFORMED_TAG, f"{raw} inside <{name}>", offset)
        else:
            self._add_body(raw)

    def _fork_join_tag(self, tag: _Tag, raw: str, offset: int) -> None:
        if tag.closing:
            self._error(FormatErrorCode.MALFORMED_TAG, f"stray {raw}", offset)
        elif tag.name == "FORK":
            self._open_fork(tag.index, offset)
        else:
            self._join(tag.index, offset)

    def _open_fork(self, index: int, offset: int) -> None:
        cfg, s = self.config, self._s
        s.mode, s.body, s.body_index, s.body_is_valid_fork = _Mode.FORK_BODY, [], index, False
        if not cfg.allow_fork:
            self._error(FormatErrorCode.NESTED_FORK, f"fork {index} in a row that may not fork", offset)
        elif index in s.active or (index in s.used and not cfg.allow_index_reuse):
            self._error(FormatErrorCode.DUPLICATE_FORK, f"fork index {index} already used", offset)
        elif (
            cfg.capacity is not None
            and cfg.pool_policy == PoolPolicy.ERROR
            and len(s.active) >= cfg.capacity - 1
        ):
            self._error(
                FormatErrorCode.POOL_OVERFLOW,
                f"fork {index} with {len(s.active)} active workers and capacity {cfg.capacity}",
                offset,
            )
        else:
            s.body_is_valid_fork = True

    def _join(self, index: int, offset: int) -> None:
        s = self._s
        s.body_index = index
        if index in s.joined and index not in s.active:
            self._error(FormatErrorCode.JOIN_TWICE, f"second join of {index}", offset)
        elif index not in s.active:
            self._error(FormatErrorCode.JOIN_UNKNOWN, f"join of {index}, never forked", offset)
        else:
            s.active.discard(index)
            s.joined.add(index)
            self.events.append(JoinEvent(index, offset))
        s.mode = _Mode.APPENDED

    def _final_tag(self, tag: _Tag, raw: str, offset: int) -> None:
        role_tag = "ANSWER" if self.config.role == Role.ORGANIZER else "RETURN"
        if tag.name != role_tag:
            return  # the other role's tags are plain text here
        if tag.closing:
            self._error(FormatErrorCode.MALFORMED_TAG, f"stray {raw}", offset)
        else:
            self._s.mode = _Mode.ANSWER_BODY if role_tag == "ANSWER" else _Mode.RETURN_BODY
            self._s.body = []

    def _end_of_row_checks(self) -> None:
        s, cfg, end = self._s, self.config, self._base
        if s.mode == _Mode.FORK_BODY:
            self._error(FormatErrorCode.MALFORMED_TAG, f"unterminated fork {s.body_index}", end)
        if s.mode == _Mode.APPENDED:
            self._error(FormatErrorCode.MALFORMED_TAG, f"join {s.body_index} without a return", end)
        if cfg.role == Role.ORGANIZER and not s.answers:
            self._error(FormatErrorCode.NO_ANSWER, "no complete <ANSWER>...</ANSWER>", end)
        if cfg.role == Role.WORKER and not s.returns:
            self._error(FormatErrorCode.WORKER_NO_RETURN, "no complete <RETURN>...</RETURN>", end)
        if s.active and cfg.unjoined_is_error:
            self._error(FormatErrorCode.UNJOINED_WORKER, f"never joined: {sorted(s.active)}", end)


def validate_text(text: str, config: ParserConfig | None = None) -> list[Event]:
    """All events of a finished row text (joins followed by their appended returns)."""
    parser = ProtocolParser(config)
    parser.feed(text)
    parser.finish()
    return parser.events


def format_errors(events: list[Event]) -> list[FormatError]:
    return [e for e in events if isinstance(e, FormatError)]

"""The organizer-worker executor: one episode on any engine, in any mode.

A row (organizer, worker, or a parallel trace) streams from the engine while
its text is parsed. A worker starts the moment ``</FORK-i>`` appears, and the
organizer's request keeps running. ``<JOIN-i>`` ends the organizer's request:
the executor waits for worker ``i`` only if it is still running, appends the
worker's returned token ids and ``</JOIN-i>``, and resumes with a prompt that
is exactly the previous prompt ids + generated ids + appended ids.

Deltas come through ``Engine.stream_to``: the row's task waits only for the end
of a request (a stop, a join, an error), and each delta is consumed by a
callback that an engine with a batched output loop (vLLM) calls from that loop,
so thousands of streams cost no task switch per token.

The first format error or budget breach ends the episode: every worker still
running is cancelled (its engine request aborted) and awaited, and the record
says why. Failures that are not the policy's end it with status ``error``:
an engine failure (an ``EngineError``, or a request the engine itself ended
with finish reason ``abort`` or ``error``: a row cut short by the engine is
never read as the policy's missing answer), with ``error_kind`` the engine's
``EngineErrorKind``; or an exception inside the runtime (a bug in the
executor, an engine or a task's answer extraction and scoring), with
``error_kind`` ``internal`` (``Episode.outcome`` is then ``runtime_error``).
A runtime exception's traceback is kept in ``info["traceback"]`` and logged
once per distinct error (``report_runtime_error``). Nothing raises out of
``run`` except the caller's own cancellation, and no task outlives its episode.

An optional observer (``run(..., on_event=f)``) sees the episode as it happens:
each row's text as it streams (``TextDelta``), forks (``WorkerForked``), joins
(``WorkerJoined``) and the finished record (``EpisodeDone``). It is called
synchronously, in order, and must be cheap and must not raise (a server pushes
the events into a queue). Without it nothing changes.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from asyncthink.detok import IncrementalDetokenizer
from asyncthink.engines.base import Engine
from asyncthink.engines.types import (
    Delta,
    EngineError,
    EngineErrorKind,
    Final,
    FinishReason,
    GenerateRequest,
    SamplingParams,
)
from asyncthink.episode import (
    INTERNAL_ERROR,
    Episode,
    EpisodeStatus,
    EventKind,
    RequestSpan,
    Row,
    RowEvent,
    RowFormatError,
)
from asyncthink.metrics import episode_metrics
from asyncthink.modes import ORGANIZER_ROW
from asyncthink.prompts import render, worker_messages
from asyncthink.protocol import (
    RETURN_CLOSE,
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
)
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.tags import ProtocolTokens
from asyncthink.task import Task

logger = logging.getLogger(__name__)
ENGINE_STALL_FRACTION = 0.5  # no token in this last part of the wall time: the engine stalled, not the policy
OFF_LOOP_CHARS = 16_384  # questions longer than this are tokenized in a thread
ENGINE_ENDED = (FinishReason.ABORT, FinishReason.ERROR)  # finishes the engine chose, not the policy
_LOGGED_ERRORS: set[tuple[str, str, int]] = set()  # runtime errors whose traceback this process has logged


def report_runtime_error(exc: BaseException, where: str) -> str:
    """Log ``exc`` with its traceback the first time this process meets it; return the traceback text.

    Errors are the same when they have the same type and were raised at the same place (file and line of
    the innermost frame): a bug that every episode of an RL step hits logs one traceback, not one per
    episode; the repeats log one line at DEBUG level. The count per step is the trainer's (``runtime_error``).
    """
    text = "".join(traceback.format_exception(exc))
    frames = traceback.extract_tb(exc.__traceback__)
    key = (type(exc).__qualname__, frames[-1].filename, frames[-1].lineno or 0) if frames else (
        type(exc).__qualname__, "", 0)
    if key in _LOGGED_ERRORS:
        logger.debug("runtime error again in %s: %s: %s", where, type(exc).__name__, exc)
    else:
        _LOGGED_ERRORS.add(key)
        logger.error("runtime error in %s (its traceback is logged once per process):\n%s", where, text)
    return text


class EpisodeFailure(Exception):
    """Internal: a format error or budget breach that ends the episode."""

    def __init__(self, code: FormatErrorCode, detail: str, row_id: str) -> None:
        super().__init__(f"{code}: {detail} (row {row_id})")
        self.record = RowFormatError(code, detail, row_id)


@dataclass(frozen=True)
class TextDelta:
    """Text row ``row_id`` gained: generated by the model, or appended by the runtime at a join."""

    row_id: str
    text: str
    generated: bool = True


@dataclass(frozen=True)
class WorkerForked:
    """Row ``parent`` forked worker ``index``, which runs as row ``row_id``."""

    parent: str
    row_id: str
    index: int
    subquery: str


@dataclass(frozen=True)
class WorkerJoined:
    """Row ``parent`` joined worker ``index`` (row ``row_id``), after waiting ``wait_s`` for it."""

    parent: str
    row_id: str
    index: int
    returned: str
    wait_s: float


@dataclass(frozen=True)
class EpisodeDone:
    """The finished record; the last event of an episode that was not cancelled."""

    episode: Episode


ExecutorEvent = TextDelta | WorkerForked | WorkerJoined | EpisodeDone
Observer = Callable[[ExecutorEvent], None]


@dataclass
class _Worker:
    row: Row
    task: asyncio.Task


@dataclass
class _RowState:
    """What a row's stream needs while it runs."""

    row: Row
    parser: ProtocolParser
    detok: IncrementalDetokenizer
    budget: int
    stops: tuple[tuple[int, ...], tuple[str, ...]]
    workers: dict[int, _Worker] = field(default_factory=dict)
    pool: asyncio.Semaphore | None = None
    offsets: list[int] = field(default_factory=lambda: [0])  # parser stream offsets at known token boundaries
    offset_tokens: list[int] = field(default_factory=lambda: [0])  # the completion tokens before each offset
    chars: int = 0
    returned_ids: list[int] | None = None

    def mark(self, text: str, tokens: int) -> None:
        """The row's text grew by ``text``, which ends at completion token ``tokens``: a known boundary (offsets
        map a return's text back to its tokens)."""
        self.chars += len(text)
        self.offsets.append(self.chars)
        self.offset_tokens.append(tokens)


class EpisodeExecutor:
    """Runs episodes of one mode on one engine; safe to share across concurrent episodes."""

    def __init__(self, engine: Engine, config: RuntimeConfig, task: Task | None = None) -> None:
        self.engine = engine
        self.config = config
        self.task = task
        self.tags = ProtocolTokens(engine.tokenizer, config.max_fork_index)
        self.config_dict = config.to_dict()  # once, not per episode: asdict costs ~0.1 ms, 1,000 episodes at once

    async def run(self, problem: dict[str, Any], seed: int | None = 0, episode_id: str = "0",
                  on_event: Observer | None = None) -> Episode:
        """Run one episode on ``problem`` (needs ``question``; ``id`` and ``gold`` when a task scores it).

        ``on_event`` observes the episode as it runs (see the module docstring).
        """
        return await _Episode(self, problem, seed, episode_id, on_event).execute()


class _Episode:
    """The state of one running episode."""

    def __init__(self, ex: EpisodeExecutor, problem: dict[str, Any], seed: int | None, episode_id: str,
                 on_event: Observer | None = None) -> None:
        self.ex, self.cfg, self.problem, self.seed = ex, ex.config, problem, seed
        self.on_event = on_event
        self.tokenizer = ex.engine.tokenizer
        self.ep = Episode(
            episode_id=episode_id, mode=self.cfg.mode, question=str(problem["question"]),
            task=ex.task.name if ex.task else None, problem_id=str(problem["id"]) if "id" in problem else None,
            prompt_version=self.cfg.prompts.version, pool_policy=str(self.cfg.pool_policy),
            capacity=self.cfg.mode.capacity(self.cfg),
            info={"seed": seed, "runtime": dict(ex.config_dict), "problem": _problem_fields(problem)},
        )
        self.t0 = time.perf_counter()
        self.worker_tasks: set[asyncio.Task] = set()
        self.top_tasks: list[asyncio.Task] = []
        self.inline_top: asyncio.Task | None = None  # the episode's own task while it runs the one top row
        self.stopping_inline = False
        self.forks = 0
        self.failure: RowFormatError | None = None
        self.crash: Exception | None = None  # an engine failure (or a bug): status "error"
        self.answers: dict[str, str] = {}
        self.last_token_at = self.t0  # when the engine last sent tokens: tells a stalled engine from a long episode

    def now(self) -> float:
        return time.perf_counter() - self.t0

    # ------------------------------------------------------------ episode lifecycle

    async def execute(self) -> Episode:
        big = len(self.ep.question) > OFF_LOOP_CHARS  # tokenizing a long prompt would stall every other episode
        tops = await asyncio.to_thread(self._top_rows) if big else self._top_rows()
        try:
            async with asyncio.timeout(self.cfg.wall_time_s):
                await self._run_tops(tops)
        except TimeoutError:
            self._on_wall_time()
        finally:
            await self._cancel_all()
        await self._finalize()
        if self.on_event is not None:
            self.on_event(EpisodeDone(self.ep))
        return self.ep

    async def _run_tops(self, tops: list[tuple[Row, ParserConfig]]) -> None:
        """Run the top rows: parallel traces as tasks, a single organizer or sequential row in this task.

        Running the one top row here sends its first request before the next episode starts: when thousands
        of episodes start at once, a task per row would queue every first request behind every start-up.
        ``_stop_everything`` stops it by cancelling this task, and that cancellation ends here.
        """
        if len(tops) > 1:
            self.top_tasks = [asyncio.create_task(self._run_top(row, cfg), name=f"row-{row.row_id}")
                              for row, cfg in tops]
            await asyncio.gather(*self.top_tasks, return_exceptions=True)
            return
        self.inline_top = asyncio.current_task()
        try:
            await self._run_top(*tops[0])
        except asyncio.CancelledError:
            if not (self.stopping_inline and self.inline_top.uncancel() == 0):
                raise  # the caller's cancellation, or the wall-time limit's: not ours to swallow
        finally:
            self.inline_top = None

    def _on_wall_time(self) -> None:
        """Out of wall time: a budget breach if tokens kept coming, an engine timeout if the engine went quiet."""
        wall = self.cfg.wall_time_s or 0.0
        silent = time.perf_counter() - self.last_token_at
        if silent >= ENGINE_STALL_FRACTION * wall:
            self._fail_crash(EngineError(EngineErrorKind.TIMEOUT, f"no tokens from the engine for {silent:.1f}s "
                                                                  f"of the {wall:g}s wall time"))
        else:
            self._fail(EpisodeFailure(FormatErrorCode.BUDGET_EXCEEDED, f"wall time {wall:g}s", ORGANIZER_ROW))

    async def _cancel_all(self) -> None:
        tasks = [t for t in (*self.top_tasks, *self.worker_tasks) if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:  # nothing left running (the usual end) costs no trip through the event loop
            await asyncio.gather(*tasks, return_exceptions=True)

    def _fail(self, failure: EpisodeFailure) -> None:
        """Record the first failure and stop every row of the episode."""
        if self.failure is None and self.crash is None:
            self.failure = failure.record
        self._stop_everything()

    def _fail_crash(self, exc: Exception) -> None:
        if self.failure is None and self.crash is None:
            self.crash = exc
        self._stop_everything()

    def _stop_everything(self) -> None:
        if self.cfg.mode.spec.traces:
            return  # traces are independent: one failing trace does not stop the others
        current = asyncio.current_task()
        for t in [*self.top_tasks, *self.worker_tasks]:
            if t is not current:
                t.cancel()
        if self.inline_top is not None and self.inline_top is not current and not self.stopping_inline:
            self.stopping_inline = True
            self.inline_top.cancel()

    async def _run_top(self, row: Row, parser_cfg: ParserConfig) -> None:
        try:
            await self._run_row(row, parser_cfg)
        except EpisodeFailure as f:
            self._record_trace_failure(row, f) if self.cfg.mode.spec.traces else self._fail(f)
        except Exception as exc:  # EngineError, or a bug: recorded, never raised out of the episode
            self._record_trace_crash(row, exc) if self.cfg.mode.spec.traces else self._fail_crash(exc)

    def _record_trace_failure(self, row: Row, f: EpisodeFailure) -> None:
        self.ep.format_errors.append(f.record)
        row.finish_reason = row.finish_reason or "format_error"

    def _record_trace_crash(self, row: Row, exc: Exception) -> None:
        """One trace's engine failure costs that trace; the episode is an error only if every trace failed so."""
        row.finish_reason = "error"
        self.ep.info.setdefault("trace_errors", {})[row.row_id] = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, EngineError):
            report_runtime_error(exc, f"episode {self.ep.episode_id}, trace {row.row_id}")
        if len(self.ep.info["trace_errors"]) == len(self.cfg.mode.top_row_ids(self.cfg)):  # one runs inline
            self._fail_crash(exc)

    # ------------------------------------------------------------ rows of each mode

    def _top_rows(self) -> list[tuple[Row, ParserConfig]]:
        cfg = self.cfg
        instruction = self.ex.task.instruction() if self.ex.task else ""
        messages = cfg.mode.top_messages(cfg.prompts, self.ep.question, instruction, cfg.capacity)
        pc = self._parser_config(Role.ORGANIZER, depth=0)
        return [(self._new_row(row_id, Role.ORGANIZER, messages), pc) for row_id in cfg.mode.top_row_ids(cfg)]

    def _parser_config(self, role: Role, depth: int) -> ParserConfig:
        cfg = self.cfg
        return ParserConfig(role=role, allow_fork=cfg.reads_forks(depth), capacity=cfg.capacity,
                            pool_policy=cfg.pool_policy, allow_index_reuse=cfg.allow_index_reuse,
                            unjoined_is_error=cfg.unjoined_is_error)

    def _new_row(self, row_id: str, role: Role, messages: list[dict[str, str]], depth: int = 0,
                 parent: str | None = None, index: int | None = None, subquery: str | None = None) -> Row:
        row = Row(row_id=row_id, role=role, depth=depth, parent=parent, fork_index=index, subquery=subquery,
                  prompt_ids=render(self.tokenizer, messages, self.cfg.prompts))
        self.ep.rows.append(row)
        return row

    # ------------------------------------------------------------ one row

    async def _run_row(self, row: Row, parser_cfg: ParserConfig) -> list[int]:
        """Stream ``row`` to its end, forking and joining; return the token ids it returns."""
        row.start_s = self.now()
        is_org = row.role == Role.ORGANIZER
        budget = self.cfg.max_organizer_tokens if is_org else self.cfg.max_worker_tokens
        stops = self.ex.tags.organizer_stops(parser_cfg.allow_fork) if is_org else self.ex.tags.worker_stops(
            parser_cfg.allow_fork)
        st = _RowState(row, ProtocolParser(parser_cfg), self._detok(row), budget, stops)
        if parser_cfg.allow_fork and self.cfg.pool_policy == PoolPolicy.WAIT:
            st.pool = asyncio.Semaphore(max(1, self.cfg.capacity - 1))
        try:
            while True:
                join = await self._stream_request(st)
                if join is None:
                    break
                await self._join(st, join)
        finally:
            row.end_s = self.now()
            row.text = self.tokenizer.decode(row.completion_ids, skip_special_tokens=False)
        return st.returned_ids or []

    def _detok(self, row: Row) -> IncrementalDetokenizer:
        return IncrementalDetokenizer(self.tokenizer, (row.prompt_ids + row.completion_ids)[-8:])

    def _request(self, st: _RowState) -> GenerateRequest:
        row = st.row
        remaining = st.budget - row.generated_tokens
        if remaining <= 0:
            raise EpisodeFailure(FormatErrorCode.BUDGET_EXCEEDED, f"{st.budget}-token budget used up", row.row_id)
        # after a stop at "<JOIN-" (joins written as text), the next request only needs the index and ">"
        stop_ids, stop_strings = self.ex.tags.tail_stops(st.stops) if st.parser.inside_join_tag else st.stops
        seed = None if self.seed is None else _request_seed(self.seed, row.row_id, len(row.requests))
        sampling = SamplingParams(
            max_tokens=remaining, temperature=self.cfg.temperature, top_p=self.cfg.top_p, top_k=self.cfg.top_k,
            seed=seed, stop_token_ids=stop_ids, stop=stop_strings, logprobs=True,
        )
        request_id = f"{self.ep.episode_id}/{row.row_id}/{len(row.requests)}/{id(self):x}"
        return GenerateRequest(row.prompt_ids + row.completion_ids, sampling, request_id)

    async def _stream_request(self, st: _RowState) -> tuple[int, int] | None:
        """One engine request; returns (join index, position) if it ended at a join, else None."""
        request, row = self._request(st), st.row
        start, t_start, final, join = len(row.completion_ids), self.now(), None, None

        def on_delta(delta: Delta) -> bool:
            nonlocal final, join
            join = self._consume(st, delta.token_ids, delta.logprobs)
            final = delta.final or final
            return join is not None  # a join not caught by an engine stop: stopping aborts the request

        try:
            await self.ex.engine.stream_to(request, on_delta)
        except EngineError as exc:
            if exc.kind == EngineErrorKind.CONTEXT_LENGTH and _policy_wrote_prompt(row):
                # the policy's own text (a sub-query, or a join's resume) outgrew the context: its failure
                raise EpisodeFailure(FormatErrorCode.BUDGET_EXCEEDED, f"context length: {exc}", row.row_id) from exc
            raise
        finally:
            reason = "join" if join else (str(final.finish_reason) if final else "abort")
            cached = final.cached_tokens if final else None
            row.requests.append(RequestSpan(start, len(row.completion_ids), reason, cached, t_start, self.now()))
        if join is None and _stopped_at_join_prefix(st, final):
            return await self._stream_request(st)  # read the index: a short request that ends at ">"
        if join is None:
            self._end_row(st, final)
        return join

    def _consume(self, st: _RowState, ids: list[int], logprobs: list[float] | None) -> tuple[int, int] | None:
        """Take one engine delta: one token, or several when the engine coalesced them while we lagged.

        Runs of tokens that cannot touch a tag (no ``<`` in their bytes, no tag half-read) are taken whole,
        with no per-token Python work; a token with a ``<`` and those after it until the tag is read go one
        by one, so a join ends the row exactly at the token that completed its tag. Any chunking gives the
        same record.
        """
        row = st.row
        if not ids:
            return None
        self.last_token_at = time.perf_counter()
        if logprobs is None or len(logprobs) != len(ids):
            # a made-up logprob would be trained on as if the engine had sampled with it: fail the episode
            raise EngineError(EngineErrorKind.SERVER, f"the engine returned {len(ids)} tokens with "
                              f"{'no' if logprobs is None else len(logprobs)} logprobs (row {row.row_id})")
        at = 0
        while at < len(ids):
            if st.parser.at_rest:
                rest = ids[at:] if at else ids
                n, text = st.detok.push_plain(rest)
                if n == len(rest):  # the usual delta: plain text to its end, taken as it came
                    self._take_plain(st, rest, logprobs[at:] if at else logprobs, text)
                    return None
                if n:
                    self._take_plain(st, ids[at : at + n], logprobs[at : at + n], text)
                    at += n  # the next token holds a '<' (or is unknown to the byte table): one by one
            join = self._consume_token(st, ids[at], logprobs[at])
            at += 1
            if join is not None:
                return join
        return None

    def _take_plain(self, st: _RowState, ids: list[int], logprobs: list[float], text: str) -> None:
        """Most tokens pass here, one delta per stream per engine step: ``_consume_token`` and ``_text`` are
        inlined for that."""
        row = st.row
        row.completion_ids += ids
        if len(ids) == 1:
            row.completion_mask.append(1)
            row.logprobs.append(float(logprobs[0]))
        else:
            row.completion_mask.extend(repeat(1, len(ids)))
            row.logprobs.extend(map(float, logprobs))
        if self.on_event is not None and text:
            self.on_event(TextDelta(row.row_id, text))
        st.mark(text, len(row.completion_ids))
        st.parser.feed(text)  # no '<' and nothing half-read: only bodies grow, no event can come

    def _consume_token(self, st: _RowState, tok: int, logprob: float) -> tuple[int, int] | None:
        row = st.row
        row.completion_ids.append(tok)
        row.completion_mask.append(1)
        row.logprobs.append(float(logprob))
        piece = st.detok.push(tok)
        self._text(st, piece, len(row.completion_ids))
        for ev in st.parser.feed(piece):
            join = self._on_event(st, ev)
            if join is not None:
                return join
        return None

    def _text(self, st: _RowState, text: str, tokens: int) -> None:
        """Note the row's text up to token ``tokens``."""
        if text and self.on_event is not None:
            self.on_event(TextDelta(st.row.row_id, text))
        st.mark(text, tokens)

    def _on_event(self, st: _RowState, ev: Any) -> tuple[int, int] | None:
        row = st.row
        if isinstance(ev, FormatError):
            raise EpisodeFailure(ev.code, ev.detail, row.row_id)
        if isinstance(ev, ForkEvent):
            self._fork(st, ev)
        elif isinstance(ev, JoinEvent):
            return ev.index, len(row.completion_ids)
        elif isinstance(ev, AnswerEvent):
            self.answers[row.row_id] = ev.text
        elif isinstance(ev, ReturnEvent):
            st.returned_ids = self._returned_ids(st, ev)
            row.returned = ev.text
        return None

    def _end_row(self, st: _RowState, final: Final | None) -> None:
        row = st.row
        row.finish_reason = str(final.finish_reason) if final else "abort"
        if final is None or final.finish_reason in ENGINE_ENDED:
            # the engine cut the row short: its missing answer or return is the engine's doing, not a format
            # error to train on
            raise _engine_ended(row, final)
        errors = [e for e in st.parser.finish() if isinstance(e, FormatError)]
        done = (row.role == Role.ORGANIZER and row.row_id in self.answers) or st.returned_ids is not None
        if final is not None and final.finish_reason == FinishReason.LENGTH and not done:
            raise EpisodeFailure(FormatErrorCode.BUDGET_EXCEEDED, f"{st.budget}-token budget used up", row.row_id)
        if errors:
            raise EpisodeFailure(errors[0].code, errors[0].detail, row.row_id)

    def _returned_ids(self, st: _RowState, ev: ReturnEvent) -> list[int]:
        """The worker's own ids for its takeaway; re-encoded only if the tags split a token.

        Both ends of the takeaway touch a tag, and tokens near a tag always go one by one, so their
        boundaries are among the known offsets.
        """
        end = ev.offset - len(RETURN_CLOSE)
        start = end - len(ev.text)
        offsets = st.offsets
        a, b = bisect.bisect_left(offsets, start), bisect.bisect_left(offsets, end)
        if a < len(offsets) and b < len(offsets) and offsets[a] == start and offsets[b] == end:
            return st.row.completion_ids[st.offset_tokens[a] : st.offset_tokens[b]]
        return self.ex.tags.encode_text(ev.text)

    # ------------------------------------------------------------ fork and join

    def _fork(self, st: _RowState, ev: ForkEvent) -> None:
        parent = st.row
        if self.forks >= self.cfg.max_forks:
            raise EpisodeFailure(FormatErrorCode.BUDGET_EXCEEDED, f"fork budget {self.cfg.max_forks}", parent.row_id)
        if not self.cfg.may_fork(parent.depth):  # its parser reads the fork only to report this breach
            raise EpisodeFailure(FormatErrorCode.BUDGET_EXCEEDED, f"depth budget {self.cfg.max_depth}", parent.row_id)
        self.forks += 1
        depth = parent.depth + 1
        row_id = f"{parent.row_id}.{sum(e.kind == EventKind.FORK for e in parent.events) + 1}"
        instruction = self.ex.task.worker_instruction() if self.ex.task else ""
        messages = worker_messages(self.cfg.prompts, ev.subquery, self.ep.question, instruction,
                                   self.cfg.may_fork(depth), self.cfg.capacity)
        row = self._new_row(row_id, Role.WORKER, messages, depth=depth, parent=parent.row_id, index=ev.index,
                            subquery=ev.subquery)
        parent.events.append(RowEvent(EventKind.FORK, ev.index, len(parent.completion_ids), row_id, self.now()))
        if self.on_event is not None:
            self.on_event(WorkerForked(parent.row_id, row_id, ev.index, ev.subquery))
        pc = self._parser_config(Role.WORKER, depth)
        task = asyncio.create_task(self._run_worker(row, pc, st.pool), name=f"row-{row_id}")
        self.worker_tasks.add(task)
        st.workers[ev.index] = _Worker(row, task)

    async def _run_worker(self, row: Row, pc: ParserConfig, pool: asyncio.Semaphore | None) -> list[int] | None:
        try:
            if pool is None:
                return await self._run_row(row, pc)
            async with pool:
                return await self._run_row(row, pc)
        except EpisodeFailure as f:
            self._fail(f)
        except Exception as exc:
            self._fail_crash(exc)
        return None

    async def _join(self, st: _RowState, join: tuple[int, int]) -> None:
        index, position = join
        row, worker = st.row, st.workers[index]
        t = self.now()
        returned = await worker.task
        if returned is None:  # the worker failed and _fail is cancelling this row too; stop here
            raise asyncio.CancelledError
        row.events.append(RowEvent(EventKind.JOIN, index, position, worker.row.row_id, t, self.now() - t))
        appended = self.ex.tags.appended_ids(returned, index)
        row.completion_ids += appended  # the next request's prompt is the last one's + generated + appended
        row.completion_mask += [0] * len(appended)
        row.logprobs += [0.0] * len(appended)
        text = self.tokenizer.decode(appended, skip_special_tokens=False)
        if self.on_event is not None:
            self._emit_join(row, worker.row, index, returned, text)
        for ev in st.parser.feed_appended(text):
            self._on_event(st, ev)  # only a FormatError can come back: it ends the episode
        st.mark(text, len(row.completion_ids))
        st.detok = self._detok(row)

    def _emit_join(self, row: Row, worker: Row, index: int, returned: list[int], appended_text: str) -> None:
        assert self.on_event is not None
        wait_s = row.events[-1].wait_s
        returned_text = self.tokenizer.decode(returned, skip_special_tokens=False)
        self.on_event(WorkerJoined(row.row_id, worker.row_id, index, returned_text, wait_s))
        self.on_event(TextDelta(row.row_id, appended_text, generated=False))

    # ------------------------------------------------------------ result

    async def _finalize(self) -> None:
        ep = self.ep
        ep.wall_s = self.now()
        if isinstance(self.crash, EngineError):
            ep.status, ep.error = EpisodeStatus.ERROR, f"{type(self.crash).__name__}: {self.crash}"
            ep.error_kind = str(self.crash.kind)
        elif self.crash is not None:
            self._runtime_error(self.crash)
        elif self.failure is not None:
            ep.format_errors.append(self.failure)
            budget = self.failure.code == FormatErrorCode.BUDGET_EXCEEDED
            ep.status = EpisodeStatus.BUDGET_EXCEEDED if budget else EpisodeStatus.FORMAT_ERROR
        if self.ex.task is None or (ep.status != EpisodeStatus.OK and not self.cfg.mode.spec.traces):
            self._settle()  # no task, or no answer to score: nothing slow, so no trip through a thread
        else:  # extracting, normalising and scoring may call math-verify: off the event loop, in one trip
            await asyncio.to_thread(self._settle)
        ep.metrics = episode_metrics(ep, self.cfg.prefill_cost)

    def _settle(self) -> None:
        """Choose the episode's answer (the top row's, or the traces' vote) and score it."""
        ep = self.ep
        try:
            if self.cfg.mode.spec.traces:
                self._vote()
            elif ep.status == EpisodeStatus.OK:
                ep.answer = self.answers.get(ORGANIZER_ROW)
                self._require_answer()
        except Exception as exc:  # a broken task is recorded, never raised out of the episode
            self._runtime_error(exc)
        self._score()

    def _runtime_error(self, exc: Exception) -> None:
        """An exception inside the runtime (a bug, not the policy's doing): status ``error``, kind ``internal``.

        An episode that already failed keeps its status: the first failure is the cause, and a later one (a
        scorer that breaks on the answer a format error left) a symptom, kept in ``info`` only."""
        ep = self.ep
        trace = report_runtime_error(exc, f"episode {ep.episode_id}")
        if ep.status != EpisodeStatus.OK:
            ep.info["later_runtime_error"] = f"{type(exc).__name__}: {exc}"
            return
        ep.status, ep.error, ep.error_kind = EpisodeStatus.ERROR, f"{type(exc).__name__}: {exc}", INTERNAL_ERROR
        ep.info["traceback"] = trace

    def _require_answer(self) -> None:
        """DESIGN's ``no_answer``: an empty ``<ANSWER></ANSWER>``, or one the task extracts nothing from."""
        ep, task = self.ep, self.ex.task
        text = (ep.answer or "").strip()
        if text and (task is None or task.extract_answer(ep.answer) is not None):
            return
        ep.format_errors.append(RowFormatError(FormatErrorCode.NO_ANSWER, "empty or unextractable <ANSWER>",
                                                 ORGANIZER_ROW))
        ep.status = EpisodeStatus.FORMAT_ERROR

    def _vote(self) -> None:
        """Majority vote over the traces' normalised answers; ties go to the earliest trace."""
        ep, task = self.ep, self.ex.task
        answers = [(rid, text) for rid, text in sorted(self.answers.items())]
        keys = [(task.normalize(task.extract_answer(t)) if task else t.strip(), rid, t) for rid, t in answers]
        keys = [k for k in keys if k[0] is not None]
        if ep.status == EpisodeStatus.OK and not keys:
            ep.format_errors.append(RowFormatError(FormatErrorCode.NO_ANSWER, "no trace gave a usable answer", "t0"))
            ep.status = EpisodeStatus.FORMAT_ERROR
        if keys:
            counts: dict[str, int] = {}
            for key, _, _ in keys:
                counts[key] = counts.get(key, 0) + 1
            best = max(counts, key=lambda k: (counts[k], -[x[0] for x in keys].index(k)))
            ep.answer = next(t for k, _, t in keys if k == best)
            ep.info["votes"] = counts

    def _score(self) -> None:
        ep, task = self.ep, self.ex.task
        if task is None or ep.answer is None:
            ep.score = 0.0 if task is not None else None
            return
        try:
            ep.extracted = task.extract_answer(ep.answer)
            ep.score = float(task.score(ep.extracted, self.problem))
            ep.info["details"] = task.details(ep.extracted, self.problem)
        except Exception as exc:  # a broken scorer scores 0 and fails the episode, never the batch
            ep.score = 0.0
            self._runtime_error(exc)


def _policy_wrote_prompt(row: Row) -> bool:
    """A worker's prompt holds the organizer's sub-query; a resumed row holds its own completion."""
    return row.role == Role.WORKER or bool(row.completion_ids)


def _problem_fields(problem: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps of the problem so it can be scored again (long texts left out)."""
    return {k: v for k, v in problem.items() if k not in ("question", "solution") and _plain(v)}


def _plain(v: Any) -> bool:
    return isinstance(v, str | int | float | bool | type(None)) or (
        isinstance(v, list | tuple) and all(isinstance(x, str | int | float) for x in v))


def _engine_ended(row: Row, final: Final | None) -> EngineError:
    """The failure of a request the engine ended itself (or whose stream ended without saying why)."""
    if final is None:
        return EngineError(EngineErrorKind.SERVER, f"the stream of row {row.row_id} ended without a finish reason")
    kind = EngineErrorKind.ABORTED if final.finish_reason == FinishReason.ABORT else EngineErrorKind.SERVER
    return EngineError(kind, f"the engine ended row {row.row_id} with finish reason {str(final.finish_reason)!r} "
                             f"after {final.completion_tokens} tokens", final.completion_tokens)


def _stopped_at_join_prefix(st: _RowState, final: Final | None) -> bool:
    """The request stopped while the text is inside a ``<JOIN-`` tag: it ended on that stop string (some servers
    do not say which stop matched, so the parser's state decides, not ``final.stop``)."""
    return final is not None and final.finish_reason == FinishReason.STOP and st.parser.inside_join_tag


def _request_seed(seed: int, row_id: str, request: int) -> int:
    """A well-mixed 32-bit seed per (episode seed, row, request)."""
    digest = hashlib.blake2b(f"{seed}/{row_id}/{request}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")

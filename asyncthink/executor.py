"""The organizer-worker executor: one episode on any engine, in any mode.

A row (organizer, worker, or a parallel trace) streams from the engine while
its text is parsed. A worker starts the moment ``</FORK-i>`` appears, and the
organizer's request keeps running. ``<JOIN-i>`` ends the organizer's request:
the executor waits for worker ``i`` only if it is still running, appends the
worker's returned token ids and ``</JOIN-i>``, and resumes with a prompt that
is exactly the previous prompt ids + generated ids + appended ids.

The first format error or budget breach ends the episode: every worker still
running is cancelled (its engine request aborted) and awaited, and the record
says why. Engine failures end it with status ``error``. Nothing raises out of
``run`` except the caller's own cancellation, and no task outlives its episode.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
import zlib
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from asyncthink.detok import IncrementalDetokenizer
from asyncthink.engines.base import Engine
from asyncthink.engines.types import Final, FinishReason, GenerateRequest, SamplingParams
from asyncthink.episode import Episode, EpisodeStatus, EventKind, RequestSpan, Row, RowEvent, RowFormatError
from asyncthink.metrics import episode_metrics
from asyncthink.prompts import organizer_messages, render, sequential_messages, worker_messages
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
from asyncthink.runtime_config import Mode, RuntimeConfig
from asyncthink.tags import ProtocolTokens

logger = logging.getLogger(__name__)


class EpisodeFailure(Exception):
    """Internal: a format error or budget breach that ends the episode."""

    def __init__(self, code: FormatErrorCode, detail: str, row_id: str) -> None:
        super().__init__(f"{code}: {detail} (row {row_id})")
        self.record = RowFormatError(code, detail, row_id)


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
    can_fork: bool
    stops: tuple[tuple[int, ...], tuple[str, ...]]
    workers: dict[int, _Worker] = field(default_factory=dict)
    pool: asyncio.Semaphore | None = None
    offsets: list[int] = field(default_factory=list)  # parser stream offset after each completion token
    chars: int = 0
    returned_ids: list[int] | None = None


class EpisodeExecutor:
    """Runs episodes of one mode on one engine; safe to share across concurrent episodes."""

    def __init__(self, engine: Engine, config: RuntimeConfig, task: Any = None) -> None:
        self.engine = engine
        self.config = config
        self.task = task
        self.tags = ProtocolTokens(engine.tokenizer, config.max_fork_index)

    async def run(self, problem: dict[str, Any], seed: int | None = 0, episode_id: str = "0") -> Episode:
        """Run one episode on ``problem`` (needs ``question``; ``id`` and ``gold`` when a task scores it)."""
        return await _Episode(self, problem, seed, episode_id).execute()


class _Episode:
    """The state of one running episode."""

    def __init__(self, ex: EpisodeExecutor, problem: dict[str, Any], seed: int | None, episode_id: str) -> None:
        self.ex, self.cfg, self.problem, self.seed = ex, ex.config, problem, seed
        self.tokenizer = ex.engine.tokenizer
        self.ep = Episode(
            episode_id=episode_id, mode=str(self.cfg.mode), question=str(problem["question"]),
            task=getattr(ex.task, "name", None), problem_id=str(problem.get("id")) if "id" in problem else None,
            prompt_version=self.cfg.prompts.version, pool_policy=str(self.cfg.pool_policy),
            capacity=self.cfg.parallel_traces if self.cfg.mode == Mode.PARALLEL else self.cfg.capacity,
            info={"seed": seed, "runtime": self.cfg.to_dict()},
        )
        self.t0 = time.perf_counter()
        self.worker_tasks: set[asyncio.Task] = set()
        self.top_tasks: list[asyncio.Task] = []
        self.forks = 0
        self.failure: RowFormatError | None = None
        self.crash: Exception | None = None  # an engine failure (or a bug): status "error"
        self.answers: dict[str, str] = {}

    def now(self) -> float:
        return time.perf_counter() - self.t0

    # ------------------------------------------------------------ episode lifecycle

    async def execute(self) -> Episode:
        tops = self._top_rows()
        self.top_tasks = [asyncio.create_task(self._run_top(row, cfg), name=f"row-{row.row_id}") for row, cfg in tops]
        try:
            async with asyncio.timeout(self.cfg.wall_time_s):
                await asyncio.gather(*self.top_tasks, return_exceptions=True)
        except TimeoutError:
            self._fail(EpisodeFailure(FormatErrorCode.BUDGET_EXCEEDED, f"wall time {self.cfg.wall_time_s}s", "0"))
        finally:
            await self._cancel_all()
        await self._finalize()
        return self.ep

    async def _cancel_all(self) -> None:
        tasks = [*self.top_tasks, *self.worker_tasks]
        for t in tasks:
            t.cancel()
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
        if self.cfg.mode == Mode.PARALLEL:
            return  # traces are independent: one failing trace does not stop the others
        for t in [*self.top_tasks, *self.worker_tasks]:
            if t is not asyncio.current_task():
                t.cancel()

    async def _run_top(self, row: Row, parser_cfg: ParserConfig) -> None:
        try:
            await self._run_row(row, parser_cfg)
        except EpisodeFailure as f:
            self._record_trace_failure(row, f) if self.cfg.mode == Mode.PARALLEL else self._fail(f)
        except Exception as exc:  # EngineError, or a bug: recorded, never raised out of the episode
            self._fail_crash(exc)

    def _record_trace_failure(self, row: Row, f: EpisodeFailure) -> None:
        self.ep.format_errors.append(f.record)
        row.finish_reason = row.finish_reason or "format_error"

    # ------------------------------------------------------------ rows of each mode

    def _top_rows(self) -> list[tuple[Row, ParserConfig]]:
        cfg, q = self.cfg, self.ep.question
        instruction = self.ex.task.instruction() if self.ex.task else ""
        if cfg.mode == Mode.ASYNCTHINK:
            messages = organizer_messages(cfg.prompts, q, instruction, cfg.capacity)
            pc = ParserConfig(Role.ORGANIZER, True, cfg.capacity, cfg.pool_policy, cfg.allow_index_reuse,
                              cfg.unjoined_is_error)
            return [(self._new_row("0", Role.ORGANIZER, 0, None, None, None, messages), pc)]
        messages = sequential_messages(cfg.prompts, q, instruction)
        pc = ParserConfig(Role.ORGANIZER, allow_fork=False)
        if cfg.mode == Mode.SEQUENTIAL:
            return [(self._new_row("0", Role.ORGANIZER, 0, None, None, None, messages), pc)]
        return [
            (self._new_row(f"t{k}", Role.ORGANIZER, 0, None, None, None, messages), pc)
            for k in range(cfg.parallel_traces)
        ]

    def _new_row(self, row_id, role, depth, parent, index, subquery, messages) -> Row:
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
        st = _RowState(row, ProtocolParser(parser_cfg), self._detok(row), budget, parser_cfg.allow_fork, stops)
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
        stop_ids, stop_strings = st.stops
        seed = None if self.seed is None else zlib.crc32(f"{self.seed}/{row.row_id}/{len(row.requests)}".encode())
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
        try:
            async with aclosing(self.ex.engine.generate(request)) as stream:
                async for delta in stream:
                    join = self._consume(st, delta.token_ids, delta.logprobs)
                    final = delta.final or final
                    if join is not None:
                        break  # a join not caught by an engine stop: closing the stream aborts the request
        finally:
            reason = "join" if join else (str(final.finish_reason) if final else "abort")
            cached = final.cached_tokens if final else None
            row.requests.append(RequestSpan(start, len(row.completion_ids), reason, cached, t_start, self.now()))
        if join is None:
            self._end_row(st, final)
        return join

    def _consume(self, st: _RowState, ids: list[int], logprobs: list[float] | None) -> tuple[int, int] | None:
        row = st.row
        for k, tok in enumerate(ids):
            row.completion_ids.append(tok)
            row.completion_mask.append(1)
            row.logprobs.append(float(logprobs[k]) if logprobs else 0.0)
            piece = st.detok.push(tok)
            st.chars += len(piece)
            st.offsets.append(st.chars)
            for ev in st.parser.feed(piece):
                join = self._on_event(st, ev)
                if join is not None:
                    return join
        return None

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
        return None

    def _end_row(self, st: _RowState, final: Final | None) -> None:
        row = st.row
        row.finish_reason = str(final.finish_reason) if final else "abort"
        errors = [e for e in st.parser.finish() if isinstance(e, FormatError)]
        done = (row.role == Role.ORGANIZER and row.row_id in self.answers) or st.returned_ids is not None
        if final is not None and final.finish_reason == FinishReason.LENGTH and not done:
            raise EpisodeFailure(FormatErrorCode.BUDGET_EXCEEDED, f"{st.budget}-token budget used up", row.row_id)
        if errors:
            raise EpisodeFailure(errors[0].code, errors[0].detail, row.row_id)

    def _returned_ids(self, st: _RowState, ev: ReturnEvent) -> list[int]:
        """The worker's own ids for its takeaway; re-encoded only if the tags split a token."""
        end = ev.offset - len(RETURN_CLOSE)
        start = end - len(ev.text)
        offsets = [0, *st.offsets]
        a, b = bisect.bisect_left(offsets, start), bisect.bisect_left(offsets, end)
        if a < len(offsets) and b < len(offsets) and offsets[a] == start and offsets[b] == end:
            return st.row.completion_ids[a:b]
        return self.ex.tags.encode_text(ev.text)

    # ------------------------------------------------------------ fork and join

    def _fork(self, st: _RowState, ev: ForkEvent) -> None:
        parent = st.row
        if self.forks >= self.cfg.max_forks:
            raise EpisodeFailure(FormatErrorCode.BUDGET_EXCEEDED, f"fork budget {self.cfg.max_forks}", parent.row_id)
        if parent.depth > self.cfg.max_depth:
            raise EpisodeFailure(FormatErrorCode.BUDGET_EXCEEDED, f"depth budget {self.cfg.max_depth}", parent.row_id)
        self.forks += 1
        depth = parent.depth + 1
        can_fork = depth <= self.cfg.max_depth
        row_id = f"{parent.row_id}.{sum(e.kind == EventKind.FORK for e in parent.events) + 1}"
        instruction = self.ex.task.worker_instruction() if self.ex.task else ""
        messages = worker_messages(self.cfg.prompts, ev.subquery, self.ep.question, instruction, can_fork,
                                   self.cfg.capacity)
        row = self._new_row(row_id, Role.WORKER, depth, parent.row_id, ev.index, ev.subquery, messages)
        parent.events.append(RowEvent(EventKind.FORK, ev.index, len(parent.completion_ids), row_id, self.now()))
        pc = ParserConfig(Role.WORKER, self.cfg.max_depth > 0, self.cfg.capacity, self.cfg.pool_policy,
                          self.cfg.allow_index_reuse, self.cfg.unjoined_is_error)
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
        prompt = row.prompt_ids + row.completion_ids
        row.completion_ids += appended
        row.completion_mask += [0] * len(appended)
        row.logprobs += [0.0] * len(appended)
        assert row.prompt_ids + row.completion_ids == prompt + appended  # the resume prompt identity
        text = self.tokenizer.decode(appended, skip_special_tokens=False)
        st.parser.feed_appended(text)
        st.chars += len(text)
        st.offsets += [st.chars] * len(appended)
        st.detok = self._detok(row)

    # ------------------------------------------------------------ result

    async def _finalize(self) -> None:
        ep = self.ep
        ep.wall_s = self.now()
        if self.crash is not None:
            ep.status, ep.error = EpisodeStatus.ERROR, f"{type(self.crash).__name__}: {self.crash}"
        elif self.failure is not None:
            ep.format_errors.append(self.failure)
            budget = self.failure.code == FormatErrorCode.BUDGET_EXCEEDED
            ep.status = EpisodeStatus.BUDGET_EXCEEDED if budget else EpisodeStatus.FORMAT_ERROR
        if self.cfg.mode == Mode.PARALLEL:
            self._vote()
        elif ep.status == EpisodeStatus.OK:
            ep.answer = self.answers.get("0")
        await self._score()
        ep.metrics = episode_metrics(ep, self.cfg.prefill_cost)

    def _vote(self) -> None:
        """Majority vote over the traces' normalised answers; ties go to the earliest trace."""
        ep, task = self.ep, self.ex.task
        answers = [(rid, text) for rid, text in sorted(self.answers.items())]
        keys = [(task.normalize(task.extract_answer(t)) if task else t.strip(), rid, t) for rid, t in answers]
        keys = [k for k in keys if k[0] is not None]
        if ep.status == EpisodeStatus.OK and not keys:
            ep.status = EpisodeStatus.FORMAT_ERROR
        if keys:
            counts: dict[str, int] = {}
            for key, _, _ in keys:
                counts[key] = counts.get(key, 0) + 1
            best = max(counts, key=lambda k: (counts[k], -[x[0] for x in keys].index(k)))
            ep.answer = next(t for k, _, t in keys if k == best)
            ep.info["votes"] = counts

    async def _score(self) -> None:
        ep, task = self.ep, self.ex.task
        if task is None or ep.answer is None:
            ep.score = 0.0 if task is not None else None
            return
        try:
            ep.extracted = task.extract_answer(ep.answer)
            ep.score = float(await asyncio.to_thread(task.score, ep.extracted, self.problem))
            ep.info["details"] = await asyncio.to_thread(task.details, ep.extracted, self.problem)
        except Exception as exc:  # a broken scorer scores 0 and is recorded; it never fails a batch
            logger.warning("scoring episode %s failed: %r", ep.episode_id, exc)
            ep.score, ep.info["score_error"] = 0.0, repr(exc)

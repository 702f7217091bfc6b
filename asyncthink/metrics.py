"""Latency and concurrency metrics of an episode, by event simulation (DESIGN section 4).

Every generated token costs one step; an appended token costs ``prefill_cost``
steps; all rows generate concurrently; a row blocked at a join waits until the
joined worker has finished. A worker starts right after its fork, or, when the
pool policy is ``wait``, once fewer than ``capacity - 1`` of its parent's
workers are still running. A subtree's duration does not depend on when it
starts, so rows are simulated recursively, any depth.

The organizer's finish time is the critical-path latency. Thinking concurrency
``eta`` is the mean number of rows generating per step over ``[0, latency)``.
Pure functions: no engine, no tokenizer.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from asyncthink.episode import Episode, EventKind, Row


@dataclass(frozen=True)
class Segment:
    """A stretch of a row's simulated timeline."""

    row_id: str
    kind: str  # "generate" | "prefill" | "blocked" | "queued"
    start: float
    end: float


@dataclass
class Timeline:
    """The simulated schedule of one episode."""

    latency: float
    segments: list[Segment] = field(default_factory=list)
    row_start: dict[str, float] = field(default_factory=dict)
    row_end: dict[str, float] = field(default_factory=dict)

    def generating_steps(self, until: float) -> float:
        return sum(max(0.0, min(s.end, until) - s.start) for s in self.segments if s.kind == "generate")


@dataclass
class _Sim:
    rows: dict[str, Row]
    prefill_cost: float
    capacity: int | None
    wait_policy: bool
    segments: list[Segment] = field(default_factory=list)
    row_start: dict[str, float] = field(default_factory=dict)
    row_end: dict[str, float] = field(default_factory=dict)

    def run(self, row: Row, start: float) -> float:
        """Simulate ``row`` from ``start``; return its finish time."""
        self.row_start[row.row_id] = start
        t, pos = start, 0
        running: list[float] = []  # finish times of this row's started workers (min-heap)
        child_end: dict[str, float] = {}
        order = {EventKind.FORK: 0, EventKind.JOIN: 1}
        for ev in sorted(row.events, key=lambda e: (e.position, order[e.kind])):
            t = self._advance(row, pos, ev.position, t)
            pos = ev.position
            if ev.child is None or ev.child not in self.rows:
                continue
            if ev.kind == EventKind.FORK:
                begin = self._slot_free_at(running, t)
                if begin > t:
                    self.segments.append(Segment(ev.child, "queued", t, begin))
                child_end[ev.child] = self.run(self.rows[ev.child], begin)
                heapq.heappush(running, child_end[ev.child])
            elif ev.child in child_end and child_end[ev.child] > t:
                self.segments.append(Segment(row.row_id, "blocked", t, child_end[ev.child]))
                t = child_end[ev.child]
        t = self._advance(row, pos, len(row.completion_mask), t)
        self.row_end[row.row_id] = t
        return t

    def _slot_free_at(self, running: list[float], t: float) -> float:
        if not (self.wait_policy and self.capacity):
            return t
        while running and running[0] <= t:
            heapq.heappop(running)
        while len(running) >= self.capacity - 1:
            t = max(t, heapq.heappop(running))
        return t

    def _advance(self, row: Row, lo: int, hi: int, t: float) -> float:
        """Spend tokens ``lo..hi`` of ``row`` starting at ``t``; record runs as segments."""
        mask = row.completion_mask
        k = lo
        while k < hi:
            j = k
            while j < hi and mask[j] == mask[k]:
                j += 1
            cost = (j - k) * (1.0 if mask[k] else self.prefill_cost)
            if cost > 0:
                kind = "generate" if mask[k] else "prefill"
                self.segments.append(Segment(row.row_id, kind, t, t + cost))
            t += cost
            k = j
        return t


def simulate(ep: Episode, prefill_cost: float = 0.0) -> Timeline:
    """Simulated schedule of an AsyncThink or sequential episode (its first row is the organizer)."""
    if ep.mode.spec.traces:
        return _simulate_parallel(ep)
    sim = _Sim(
        rows={r.row_id: r for r in ep.rows},
        prefill_cost=prefill_cost,
        capacity=ep.capacity,
        wait_policy=ep.pool_policy == "wait",
    )
    latency = sim.run(ep.organizer, 0.0) if ep.rows else 0.0
    return Timeline(latency, sim.segments, sim.row_start, sim.row_end)


def _simulate_parallel(ep: Episode) -> Timeline:
    """N independent traces side by side: the latency is the longest trace."""
    segs, ends = [], {}
    for r in ep.rows:
        ends[r.row_id] = float(r.generated_tokens)
        if r.generated_tokens:
            segs.append(Segment(r.row_id, "generate", 0.0, ends[r.row_id]))
    return Timeline(max(ends.values(), default=0.0), segs, {r.row_id: 0.0 for r in ep.rows}, ends)


def critical_path_latency(ep: Episode, prefill_cost: float = 0.0) -> float:
    return simulate(ep, prefill_cost).latency


def thinking_concurrency(ep: Episode, prefill_cost: float = 0.0) -> float:
    """``eta``: mean number of rows generating per simulated step; 1 with no forks."""
    tl = simulate(ep, prefill_cost)
    if tl.latency <= 0:
        return 0.0
    return tl.generating_steps(tl.latency) / tl.latency


def parallel_latency(trace_lengths: list[int]) -> int:
    """Parallel thinking with N traces finishes when the longest trace does."""
    return max(trace_lengths, default=0)


def episode_metrics(ep: Episode, prefill_cost: float = 0.0) -> dict[str, float]:
    """The per-episode figures reported everywhere (eval, RL logs, the server)."""
    tl = simulate(ep, prefill_cost)
    eta = tl.generating_steps(tl.latency) / tl.latency if tl.latency > 0 else 0.0
    workers = [r for r in ep.rows if r.parent is not None]
    forks = sum(1 for r in ep.rows for e in r.events if e.kind == EventKind.FORK)
    joins = sum(1 for r in ep.rows for e in r.events if e.kind == EventKind.JOIN)
    return {
        "latency": tl.latency,
        "eta": eta,
        "eta_over_capacity": eta / max(1, ep.capacity),
        "total_tokens": float(sum(r.generated_tokens for r in ep.rows)),
        "organizer_tokens": float(ep.rows[0].generated_tokens if ep.rows and not ep.mode.spec.traces else 0),
        "worker_tokens": float(sum(r.generated_tokens for r in workers)),
        "forks": float(forks),
        "joins": float(joins),
        "max_depth": float(max((r.depth for r in ep.rows), default=0)),
        "wall_s": ep.wall_s,
    }

"""Settings of one episode: mode, pool, budgets and sampling, shared by every mode.

The evaluator runs sequential, parallel and AsyncThink with one
``RuntimeConfig`` so they use the same engine, sampling and budgets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from asyncthink.config_io import build_nested, require
from asyncthink.modes import Mode
from asyncthink.prompts import PromptConfig
from asyncthink.protocol import PoolPolicy

__all__ = ["Mode", "RuntimeConfig"]


@dataclass
class RuntimeConfig:
    """Everything that decides how an episode runs."""

    mode: Mode = Mode.ASYNCTHINK
    """``sequential``, ``parallel`` or ``asyncthink``."""
    capacity: int = 4
    """Pool size: the organizer plus at most ``capacity - 1`` active workers."""
    pool_policy: PoolPolicy = PoolPolicy.ERROR
    """A fork into a full pool is a ``pool_overflow`` error, or waits for a running worker to finish."""
    allow_index_reuse: bool = False
    """Allow forking an index again after it was joined."""
    unjoined_is_error: bool = True
    """Ending while a forked worker was never joined is an ``unjoined_worker`` error (else ignored)."""
    max_organizer_tokens: int = 1024
    """Tokens the organizer (or each parallel/sequential trace) may generate, over all its requests."""
    max_worker_tokens: int = 512
    """Tokens each worker may generate."""
    max_forks: int = 8
    """Forks per episode, all depths together."""
    max_depth: int = 0
    """Recursion: deepest worker level that may fork its own workers; 0 = workers never fork (the paper)."""
    max_fork_index: int = 16
    """Join tags ``<JOIN-1>..<JOIN-n>`` that stop the engine; higher indices are caught by the parser."""
    wall_time_s: float | None = None
    """Wall-clock limit of an episode in seconds; ``None`` = none."""
    parallel_traces: int = 4
    """Parallel mode: number of independent traces voted on."""
    temperature: float = 1.0
    """Sampling temperature, 0 = greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    top_k: int = 0
    """Top-k sampling; 0 disables."""
    prefill_cost: float = 0.0
    """Latency metric: simulated steps per appended token."""
    prompts: PromptConfig = field(default_factory=PromptConfig)
    """Prompt style and rendering."""

    def __post_init__(self) -> None:
        build_nested(self)
        self.mode = Mode(self.mode)
        self.pool_policy = PoolPolicy(self.pool_policy)
        require(
            (
                self.capacity >= 2 or not self.mode.spec.forks,
                f"capacity must be >= 2 for {self.mode}, got {self.capacity}",
            ),
            (self.max_organizer_tokens >= 1, f"max_organizer_tokens must be >= 1, got {self.max_organizer_tokens}"),
            (self.max_worker_tokens >= 1, f"max_worker_tokens must be >= 1, got {self.max_worker_tokens}"),
            (self.max_forks >= 0, f"max_forks must be >= 0, got {self.max_forks}"),
            (self.max_depth >= 0, f"max_depth must be >= 0, got {self.max_depth}"),
            (self.parallel_traces >= 1, f"parallel_traces must be >= 1, got {self.parallel_traces}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (self.wall_time_s is None or self.wall_time_s > 0, f"wall_time_s must be > 0, got {self.wall_time_s}"),
        )

    def may_fork(self, depth: int) -> bool:
        """Whether a row at ``depth`` may fork, as its prompt tells it: the top row (depth 0) in a forking mode,
        a worker while recursion reaches its depth."""
        return self.mode.spec.forks and depth <= self.max_depth

    def reads_forks(self, depth: int) -> bool:
        """Whether the parser reads a row's forks: those that may fork, and with recursion on every worker, so a
        fork past ``max_depth`` is a depth budget breach (``budget_exceeded``), not a ``nested_fork``."""
        return self.may_fork(depth) or (depth > 0 and self.max_depth > 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mode"], d["pool_policy"] = str(self.mode), str(self.pool_policy)
        return d

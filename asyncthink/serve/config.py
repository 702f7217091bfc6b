"""Settings of ``asyncthink serve``: where it listens, what a request may ask for, how it shuts down.

``ServeConfig.runtime`` holds the defaults of every episode (mode, capacity,
budgets, sampling, prompt style); a request may change some of them within
``ServeLimits``. ``ServeConfig.engine`` is the same ``EngineConfig`` as eval's.
Loaded like every other config (``config_io.load_config``): YAML plus
``key=value`` overrides, e.g. ``limits.max_concurrent_episodes=32``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncthink.config_io import build_nested, require
from asyncthink.engines.factory import EngineConfig
from asyncthink.runtime_config import RuntimeConfig


@dataclass
class ServeLimits:
    """What one request may cost, and how many run at once."""

    max_concurrent_episodes: int = 16
    """Episodes running at once; further requests wait in the queue."""
    max_queued: int = 64
    """Requests that may wait for a free slot; one more is refused at once with 429."""
    queue_timeout_s: float = 60.0
    """Longest wait in the queue; a request still waiting then gets 429."""
    max_body_bytes: int = 1 << 20
    """Largest request body; a larger one gets 413."""
    body_timeout_s: float = 30.0
    """Seconds a client may take to send its request body (then 408)."""
    write_timeout_s: float = 30.0
    """Seconds a stream may stay blocked on a client that does not read; then the client counts as gone."""
    max_tokens: int = 4096
    """Largest ``max_tokens`` a request may ask for: the organizer's budget (each trace's, in parallel mode)."""
    max_worker_tokens: int = 2048
    """Largest per-worker token budget a request may ask for."""
    max_capacity: int = 8
    """Largest pool a request may ask for (organizer + workers)."""
    max_forks: int = 16
    """Largest fork budget a request may ask for."""
    max_parallel_traces: int = 8
    """Most traces a parallel-mode request may ask for."""
    max_depth: int = 1
    """Deepest recursion a request may ask for (0 = workers never fork)."""
    max_wall_time_s: float = 600.0
    """Wall-clock limit of every episode; a request may ask for less, never more."""
    header_timeout_s: float = 10.0
    """Seconds a connection may take to send a complete request head, from opening or from its last response."""
    max_idle_connections: int = 256
    """Open connections without a request in progress; past this the oldest idle one is closed."""

    def __post_init__(self) -> None:
        positive = ["max_concurrent_episodes", "max_body_bytes", "max_tokens", "max_worker_tokens",
                    "max_capacity", "max_parallel_traces", "queue_timeout_s", "body_timeout_s",
                    "write_timeout_s", "max_wall_time_s", "header_timeout_s", "max_idle_connections"]
        for name in positive:
            require((getattr(self, name) > 0, f"limits.{name} must be > 0, got {getattr(self, name)!r}"))
        for name in ("max_queued", "max_forks", "max_depth"):
            require((getattr(self, name) >= 0, f"limits.{name} must be >= 0, got {getattr(self, name)!r}"))
        require((self.max_capacity >= 2, f"limits.max_capacity must be >= 2, got {self.max_capacity!r}"))


@dataclass
class ServeConfig:
    """The server: address, served model name, per-request defaults and limits, shutdown."""

    host: str = "127.0.0.1"
    """Address to listen on; loopback by default (the API has no authentication)."""
    port: int = 8000
    """TCP port; 0 picks a free one."""
    served_model_name: str | None = None
    """The ``model`` clients must send; defaults to the engine's model path or name."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """Defaults of every episode (mode, capacity, budgets, sampling, prompts); requests may change some.
    An unset ``wall_time_s`` means ``limits.max_wall_time_s``: no episode runs unbounded."""
    limits: ServeLimits = field(default_factory=ServeLimits)
    """What a request may ask for, and admission control."""
    shutdown_grace_s: float = 30.0
    """At shutdown, in-flight episodes get this long to finish; the rest are cancelled (503 to their clients)."""
    api_key: str | None = None
    """When set, ``/v1/*`` requests need ``Authorization: Bearer <api_key>`` (401 otherwise); ``/health`` stays open."""
    engine: EngineConfig | None = None
    """The engine and model (``asyncthink.engines.EngineConfig``, as in eval), e.g. ``kind``, ``model`` or the
    HTTP engine's ``read_timeout_s``; ``asyncthink serve``'s engine flags override its fields. ``None`` only
    when the caller builds the engine itself (``create_app(engine, config)``)."""

    def __post_init__(self) -> None:
        build_nested(self)
        require((0 <= self.port <= 65535, f"port must be in 0..65535, got {self.port!r}"))
        require((self.shutdown_grace_s >= 0, f"shutdown_grace_s must be >= 0, got {self.shutdown_grace_s!r}"))
        require((self.api_key is None or bool(self.api_key), "api_key must not be empty"))
        require((self.served_model_name is None or bool(self.served_model_name.strip()),
               f"served_model_name must not be blank, got {self.served_model_name!r}"))
        self._check_defaults_within_limits()

    def _check_defaults_within_limits(self) -> None:
        rt, lim = self.runtime, self.limits
        pairs = [
            ("max_organizer_tokens", rt.max_organizer_tokens, "max_tokens", lim.max_tokens),
            ("max_worker_tokens", rt.max_worker_tokens, "max_worker_tokens", lim.max_worker_tokens),
            ("capacity", rt.capacity, "max_capacity", lim.max_capacity),
            ("max_forks", rt.max_forks, "max_forks", lim.max_forks),
            ("parallel_traces", rt.parallel_traces, "max_parallel_traces", lim.max_parallel_traces),
            ("max_depth", rt.max_depth, "max_depth", lim.max_depth),
        ]
        for name, value, limit_name, limit in pairs:
            require((value <= limit, f"runtime.{name}={value!r} exceeds limits.{limit_name}={limit!r}"))
        wall = rt.wall_time_s
        require((wall is None or wall <= lim.max_wall_time_s,
               f"runtime.wall_time_s={wall!r} exceeds limits.max_wall_time_s={lim.max_wall_time_s!r}"))


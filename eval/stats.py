"""Figures of one (task, mode, budget) from its episode records, with bootstrap confidence intervals.

Accuracy is the share of episodes whose score is 1 (fully correct; for
countdown, all ``required`` solutions, the paper's figure); the partial-credit
mean score and countdown's ``at_least_a`` rates are reported beside it. An
episode that ended with status ``error`` (an engine failure) counts as wrong
but is left out of latency, wall-clock, token and concurrency figures, which
would otherwise be dragged toward zero. Percentiles use numpy's linear
interpolation. Confidence intervals are percentile bootstraps that resample
clusters of related problems with all their samples: samples of one problem
are not independent, and neither are problems of one cluster (countdown
problems on one number set; see ``Task.cluster``). A record's cluster is the
``cluster`` field its task stored in the problem (``info["problem"]``); a
problem whose records carry none is its own cluster. ``n_clusters`` says how
many were resampled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from asyncthink.episode import Episode, EpisodeStatus
from asyncthink.metrics import episode_metrics


def is_correct(ep: Episode) -> bool:
    return ep.score is not None and ep.score >= 1 - 1e-9


def problem_key(ep: Episode) -> str:
    return ep.problem_id if ep.problem_id is not None else ep.episode_id.rsplit("#", 1)[0]


def cluster_keys(episodes: Iterable[Episode]) -> dict[str, str]:
    """Problem key -> cluster key, from the ``cluster`` the task stored in each record's problem. A problem
    none of whose records has one (an older record, a task without clusters) is its own cluster; the two
    kinds of key are prefixed apart so a problem id never merges with a cluster of the same name."""
    out: dict[str, str] = {}
    for ep in episodes:
        key, fields = problem_key(ep), ep.info.get("problem") or {}
        if "cluster" in fields:  # an engine-error record may lack the problem: its siblings decide
            out[key] = f"cluster:{fields['cluster']}"
        else:
            out.setdefault(key, f"problem:{key}")
    return out


def metrics_of(ep: Episode) -> dict[str, float]:
    return ep.metrics or episode_metrics(ep)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def bootstrap_ci(
    values: Sequence[float], groups: Sequence[str], n_boot: int = 1000, ci: float = 0.95, seed: int = 0
) -> list[float] | None:
    """Percentile interval of the mean, resampling whole groups (clusters of problems) with replacement."""
    if not len(values):
        return None
    names = sorted(set(groups))
    index = {g: k for k, g in enumerate(names)}
    sums, counts = np.zeros(len(names)), np.zeros(len(names))
    for v, g in zip(values, groups, strict=True):
        sums[index[g]] += v
        counts[index[g]] += 1
    draws = np.random.default_rng(seed).integers(0, len(names), size=(n_boot, len(names)))
    stats = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    lo, hi = np.percentile(stats, [50 * (1 - ci), 50 * (1 + ci)])
    return [float(lo), float(hi)]


def summarize(episodes: Sequence[Episode], n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Every reported figure of one run's episodes (``None`` where nothing was measured)."""
    eps = list(episodes)
    timed = [ep for ep in eps if ep.status != EpisodeStatus.ERROR]
    clusters = cluster_keys(eps)
    out: dict[str, Any] = {
        "n_episodes": len(eps),
        "n_problems": len(clusters),
        "n_clusters": len(set(clusters.values())),
        "statuses": dict(Counter(str(ep.status) for ep in eps)),
    }
    out |= _accuracy(eps, clusters, n_boot, ci, seed)
    out |= _latency(timed, clusters, n_boot, ci, seed)
    out |= _cost(timed)
    out |= _format(eps)
    return out


def _accuracy(eps: list[Episode], clusters: dict[str, str], n_boot: int, ci: float, seed: int) -> dict[str, Any]:
    correct = [float(is_correct(ep)) for ep in eps]
    return {
        "accuracy": mean(correct),
        "accuracy_ci": bootstrap_ci(correct, [clusters[problem_key(ep)] for ep in eps], n_boot, ci, seed),
        "mean_score": mean([ep.score or 0.0 for ep in eps]),
        "at_least": _at_least(eps),
    }


def _at_least(eps: list[Episode]) -> dict[str, float]:
    """Countdown's ``at_least_a`` rates; an episode without details (no answer) counts as 0."""
    keys = {k for ep in eps for k in (ep.info.get("details") or {}) if k.startswith("at_least_")}
    ordered = sorted(keys, key=lambda k: int(k.rsplit("_", 1)[1]))
    return {k.rsplit("_", 1)[1]: float(np.mean([(ep.info.get("details") or {}).get(k, 0.0) for ep in eps]))
            for k in ordered}


def _latency(timed: list[Episode], clusters: dict[str, str], n_boot: int, ci: float, seed: int) -> dict[str, Any]:
    latency = [metrics_of(ep)["latency"] for ep in timed]
    wall = [ep.wall_s for ep in timed]
    return {
        "n_timed": len(timed),
        "latency_mean": mean(latency),
        "latency_ci": bootstrap_ci(latency, [clusters[problem_key(ep)] for ep in timed], n_boot, ci, seed),
        "latency_p50": percentile(latency, 50),
        "latency_p90": percentile(latency, 90),
        "wall_s_mean": mean(wall),
        "wall_s_p50": percentile(wall, 50),
        "wall_s_p90": percentile(wall, 90),
    }


def _cost(timed: list[Episode]) -> dict[str, Any]:
    def avg(name: str) -> float | None:
        return mean([metrics_of(ep)[name] for ep in timed])

    return {
        "total_tokens": float(sum(metrics_of(ep)["total_tokens"] for ep in timed)),
        "tokens_per_episode": avg("total_tokens"),
        "eta": avg("eta"),
        "eta_over_capacity": avg("eta_over_capacity"),
        "forks_per_episode": avg("forks"),
        "joins_per_episode": avg("joins"),
    }


def _format(eps: list[Episode]) -> dict[str, Any]:
    """Share of episodes with any format error, and with each code (an episode counts once per code)."""
    n = max(1, len(eps))
    codes = Counter(code for ep in eps for code in set(ep.error_codes))
    return {
        "format_error_rate": sum(ep.has_format_error for ep in eps) / n if eps else None,
        "format_errors": {code: count / n for code, count in sorted(codes.items())},
        "errors": sum(ep.status == EpisodeStatus.ERROR for ep in eps),
    }

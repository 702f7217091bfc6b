"""Paired comparisons: how much a figure differs between two sets of episodes on the same problems.

Two modes of one run, two checkpoints evaluated on the same problems, a run
with the concurrency reward against one without: each is a claim only with
its interval. Episodes are matched by problem (``problem_key``); each side's
value for a problem is the mean over its samples, and problems present on one
side only are left out (and counted). The interval is a percentile bootstrap
of the mean per-problem difference ``b - a`` that resamples clusters of
related problems (``stats.cluster_keys``: countdown problems on one number
set move together), so duplicates within a cluster cannot narrow it; each
comparison says how many clusters it used. The difference is significant
when the interval excludes 0 and at least ``MIN_CLUSTERS`` clusters were
compared (a bootstrap over a handful of clusters is overconfident, over one
it is a point). Latency and concurrency leave out ``error`` episodes (engine
failures), as ``stats`` does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asyncthink.episode import Episode, EpisodeStatus
from asyncthink.eval.stats import bootstrap_ci, cluster_keys, is_correct, metrics_of, problem_key

MIN_CLUSTERS = 10
"""Fewer shared clusters of problems than this give no verdict, whatever the interval."""


def _timed(name: str) -> Callable[[Episode], float | None]:
    return lambda ep: None if ep.status == EpisodeStatus.ERROR else float(metrics_of(ep)[name])


METRICS: dict[str, Callable[[Episode], float | None]] = {
    "accuracy": lambda ep: float(is_correct(ep)),
    "score": lambda ep: float(ep.score or 0.0),
    "format_error": lambda ep: float(ep.has_format_error),
    "latency": _timed("latency"),
    "eta_over_capacity": _timed("eta_over_capacity"),
    "forks": _timed("forks"),
}
"""What can be compared: a value per episode, ``None`` where the episode does not count."""


@dataclass(frozen=True)
class Comparison:
    """``b - a`` for one metric, over the problems both sides have."""

    metric: str
    a: str
    b: str
    problems: int
    clusters: int
    """Clusters of related problems among ``problems``: what the bootstrap resampled."""
    unmatched: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    ci: tuple[float, float] | None

    @property
    def significant(self) -> bool:
        return self.ci is not None and self.clusters >= MIN_CLUSTERS and (self.ci[0] > 0 or self.ci[1] < 0)

    @property
    def verdict(self) -> str:
        if self.ci is None:
            return ""
        if self.clusters < MIN_CLUSTERS:
            return f"too few clusters (< {MIN_CLUSTERS})"
        return "significant" if self.significant else "not significant"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"significant": self.significant, "verdict": self.verdict}


def compare(a: Sequence[Episode], b: Sequence[Episode], metric: str = "accuracy", a_label: str = "a",
            b_label: str = "b", n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> Comparison:
    """The paired difference ``b - a`` of ``metric`` over the problems both sides have."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
    per_a, per_b = _per_problem(a, METRICS[metric]), _per_problem(b, METRICS[metric])
    shared = sorted(per_a.keys() & per_b.keys())
    unmatched = len(per_a.keys() ^ per_b.keys())
    if not shared:
        return Comparison(metric, a_label, b_label, 0, 0, unmatched, None, None, None, None)
    clusters = cluster_keys([*a, *b])
    groups = [clusters[k] for k in shared]
    va, vb = np.array([per_a[k] for k in shared]), np.array([per_b[k] for k in shared])
    interval = bootstrap_ci(vb - va, groups, n_boot, ci, seed)
    return Comparison(metric, a_label, b_label, len(shared), len(set(groups)), unmatched, float(va.mean()),
                      float(vb.mean()), float((vb - va).mean()), (interval[0], interval[1]))


def _per_problem(episodes: Sequence[Episode], value: Callable[[Episode], float | None]) -> dict[str, float]:
    values: dict[str, list[float]] = defaultdict(list)
    for ep in episodes:
        v = value(ep)
        if v is not None:
            values[problem_key(ep)].append(v)
    return {k: float(np.mean(v)) for k, v in values.items()}


def comparison_table(comparisons: Sequence[Comparison | dict[str, Any]], ci: float = 0.95) -> list[str]:
    """Markdown rows: the two sides, their means, the difference and its interval."""
    lines = [f"| metric | a | b | problems | clusters | mean a | mean b | b - a [{ci:.0%} CI] | |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        c = c if isinstance(c, dict) else c.to_dict()
        scale = 100.0 if c["metric"] in ("accuracy", "format_error") else 1.0
        unit = " pp" if scale == 100.0 else ""
        digits = 1 if scale == 100.0 or c["metric"] == "latency" else 3  # eta/capacity and scores live in [0, 1]
        interval = "-" if c["ci"] is None else (
            f"{c['diff'] * scale:+.{digits}f}{unit} [{c['ci'][0] * scale:+.{digits}f}, "
            f"{c['ci'][1] * scale:+.{digits}f}]")
        verdict = c["verdict"]
        means = ["-" if m is None else f"{m * scale:.{digits}f}" for m in (c["mean_a"], c["mean_b"])]
        clusters = c.get("clusters", c["problems"])  # comparisons saved before clusters existed: one per problem
        lines.append(f"| {c['metric']} | {c['a']} | {c['b']} | {c['problems']} | {clusters} | {means[0]} | {means[1]} "
                     f"| {interval} | {verdict} |")
    return lines


def compare_runs(dir_a: Path, dir_b: Path, metrics: Sequence[str] = ("accuracy", "latency", "eta_over_capacity"),
                 n_boot: int = 2000, ci: float = 0.95, seed: int = 0) -> list[dict[str, Any]]:
    """Two evaluation folders (say SFT and SFT + RL on the same problems), cell by cell: every records
    file ``records/<task>/<mode>-<budget>.jsonl`` present in both is compared, ``b - a``."""
    from asyncthink.episode import read_jsonl

    out = []
    for path_a in sorted(Path(dir_a).glob("records/*/*.jsonl")):
        path_b = Path(dir_b) / path_a.relative_to(dir_a)
        if not path_b.is_file():
            continue
        eps_a, eps_b = list(read_jsonl(path_a)), list(read_jsonl(path_b))
        cell = f"{path_a.parent.name}/{path_a.stem}"
        for metric in metrics:
            c = compare(eps_a, eps_b, metric, f"{Path(dir_a).name}:{cell}", f"{Path(dir_b).name}:{cell}",
                        n_boot, ci, seed)
            out.append({"task": path_a.parent.name} | c.to_dict())
    if not out:
        raise ValueError(f"{dir_a} and {dir_b} share no records files (records/<task>/<mode>-<budget>.jsonl)")
    return out

"""PNG plots of an evaluation: accuracy against critical-path latency, and latency distributions.

One panel per task. Modes keep one colour everywhere; a mode's budgets are
joined by a line in budget order, so a budget sweep reads as a curve.
Figures are drawn on matplotlib's Agg canvas without pyplot, so plotting
never touches global state or needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from asyncthink.episode import Episode, EpisodeStatus
from asyncthink.eval.stats import metrics_of
from asyncthink.eval.store import RunKey
from asyncthink.modes import Mode


def _panels(n: int, width: float = 5.0, height: float = 4.0) -> tuple[Figure, list[Any]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _tasks(results: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(r["task"] for r in results))


def _err(value: float | None, ci: list[float] | None, scale: float = 1.0) -> list[list[float]]:
    if value is None or ci is None:
        return [[0.0], [0.0]]
    return [[max(0.0, (value - ci[0]) * scale)], [max(0.0, (ci[1] - value) * scale)]]


def accuracy_vs_latency(results: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Accuracy (%) against mean critical-path latency per mode and budget, with CI bars on both axes."""
    tasks = _tasks(results)
    fig, axes = _panels(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        for slot, mode in enumerate(dict.fromkeys(r["mode"] for r in results if r["task"] == task)):
            rows = sorted((r for r in results if r["task"] == task and r["mode"] == mode), key=lambda r: r["budget"])
            rows = [r for r in rows if r["accuracy"] is not None and r["latency_mean"] is not None]
            _mode_curve(ax, mode, rows, slot)
        ax.set_ylim(*_accuracy_range([r for r in results if r["task"] == task]))
        ax.set_title(task)
        ax.set_xlabel("critical-path latency (tokens, mean)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Accuracy vs critical-path latency (bars: bootstrap CI)")
    return _save(fig, path)


def _accuracy_range(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """At least 20 points tall and inside [-2, 102], so equal accuracies do not blow up to a noise scale."""
    values = [100 * v for r in rows for v in [r["accuracy"], *(r["accuracy_ci"] or [])] if v is not None] or [0.0]
    lo, hi = min(values), max(values)
    pad = max(5.0, (20 - (hi - lo)) / 2)
    return max(-2.0, lo - pad), min(102.0, hi + pad)


def _mode_curve(ax: Any, mode: str, rows: list[dict[str, Any]], slot: int = 0) -> None:
    if not rows:
        return
    color = Mode(mode).spec.color
    xs = [r["latency_mean"] for r in rows]
    ys = [100 * r["accuracy"] for r in rows]
    ax.plot(xs, ys, "-", color=color, alpha=0.5)
    labels: dict[tuple[float, float], list[str]] = {}
    for r, x, y in zip(rows, xs, ys, strict=True):
        ax.errorbar(
            [x],
            [y],
            xerr=_err(r["latency_mean"], r["latency_ci"]),
            yerr=_err(r["accuracy"], r["accuracy_ci"], 100),
            fmt="o",
            color=color,
            capsize=3,
            label=Mode(mode).spec.label if r is rows[0] else None,
        )
        labels.setdefault((round(x, 1), round(y, 1)), []).append(r["budget_label"])
    for (x, y), names in labels.items():  # budgets that land on one point (a budget never reached) share a label
        # one label height per mode, so labels of nearby points of different modes do not overprint
        ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(5, 4 + 9 * slot), fontsize=8,
                    color=color)


def latency_distributions(records: dict[RunKey, list[Episode]], labels: dict[RunKey, str], path: str | Path) -> Path:
    """Box plots of per-episode critical-path latency for each mode and budget, episodes as dots."""
    tasks = list(dict.fromkeys(key.task for key in records))
    fig, axes = _panels(len(tasks), width=5.5)
    rng = np.random.default_rng(0)  # jitter only; fixed so reruns draw the same picture
    for ax, task in zip(axes, tasks, strict=True):
        keys = [k for k in records if k.task == task]
        data = [[metrics_of(ep)["latency"] for ep in records[k] if ep.status != EpisodeStatus.ERROR] for k in keys]
        positions = list(range(1, len(keys) + 1))
        ax.boxplot([d or [np.nan] for d in data], positions=positions, widths=0.6, showfliers=False,
                   medianprops={"color": "black"})
        for pos, key, values in zip(positions, keys, data, strict=True):
            jitter = rng.uniform(-0.18, 0.18, len(values))
            ax.scatter(pos + jitter, values, s=10, alpha=0.6, color=Mode(key.mode).spec.color)
        ax.set_xticks(positions, [labels[k] for k in keys], rotation=30, ha="right", fontsize=8)
        ax.set_title(task)
        ax.set_ylabel("critical-path latency (tokens)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Critical-path latency per episode")
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path

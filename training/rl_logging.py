"""Per-step RL metrics: computed from episodes and loss parts, shown on the console, written to JSONL
(and TensorBoard when installed), and plotted as curves at the end of a run."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from asyncthink.episode import Episode

CURVES = [("reward", "reward"), ("accuracy", "accuracy"), ("eta_over_capacity", "eta / capacity"),
          ("latency", "critical-path latency"), ("format_error_rate", "format error rate"),
          ("forks", "forks per episode"), ("loss", "loss"), ("kl", "KL to reference"), ("clip_fraction", "clipped")]


def episode_stats(episodes: list[Episode]) -> dict[str, float]:
    """Means over a step's episodes, with the format error rate split by code."""
    n = max(1, len(episodes))

    def mean(values) -> float:
        values = list(values)
        return sum(values) / max(1, len(values))

    codes = collections.Counter(code for ep in episodes for code in set(ep.error_codes))
    stats = {
        "reward": mean(ep.reward or 0.0 for ep in episodes),
        "accuracy": mean(ep.score or 0.0 for ep in episodes),
        "format_error_rate": sum(ep.has_format_error for ep in episodes) / n,
        "eta_over_capacity": mean(ep.metrics.get("eta_over_capacity", 0.0) for ep in episodes),
        "latency": mean(ep.metrics.get("latency", 0.0) for ep in episodes),
        "forks": mean(ep.metrics.get("forks", 0.0) for ep in episodes),
        "generated_tokens": float(sum(ep.metrics.get("total_tokens", 0.0) for ep in episodes)),
        "engine_errors": float(sum(1 for ep in episodes if ep.status == "error")),
    }
    stats.update({f"format_error/{code}": count / n for code, count in sorted(codes.items())})
    return stats


class MetricsLogger:
    """Console, JSONL and optional TensorBoard sinks for one run (rank 0 only)."""

    def __init__(self, out: str | Path, tensorboard: bool = True, enabled: bool = True) -> None:
        self.path = Path(out) / "metrics.jsonl"
        self.enabled = enabled
        self.console = Console()
        self.tb = _tensorboard(Path(out) / "tensorboard") if tensorboard and enabled else None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for key, value in metrics.items():
                self.tb.add_scalar(key, value, step)
        shown = ("reward", "accuracy", "format_error_rate", "eta_over_capacity", "latency", "forks", "loss",
                 "kl", "clip_fraction", "tokens_per_s", "step_s")
        self.console.print(f"[bold]step {step}[/] " + "  ".join(
            f"{k}={metrics[k]:.3g}" for k in shown if k in metrics))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _tensorboard(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional
        return None
    return SummaryWriter(str(folder))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """One row per step, in step order. A run resumed from a checkpoint logs the steps after it again; the
    later row of a step is the one the final model descends from, so it wins."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return sorted({row["step"]: row for row in rows}.values(), key=lambda row: row["step"])


def plot_curves(metrics_path: str | Path, png: str | Path, title: str = "RL") -> Path | None:
    """A grid of the run's curves; returns the PNG path (or None with no metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    if not rows:
        return None
    fig, axes = plt.subplots(3, 3, figsize=(12, 8.5))
    steps = [r["step"] for r in rows]
    for ax, (key, label) in zip(axes.flat, CURVES, strict=True):
        ax.plot(steps, [r.get(key, float("nan")) for r in rows], marker=".", linewidth=1)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)

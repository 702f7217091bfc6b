"""Per-step RL metrics: computed from episodes and loss parts, shown on the console, written to JSONL
(and TensorBoard when installed), and plotted as curves at the end of a run.

Two figures of the answers, named for what they are: ``score`` is the mean of the task's partial-credit
score (the reward's accuracy term, ``R_accuracy``), ``accuracy`` the share of episodes the evaluator counts
correct (``asyncthink.eval.stats.is_correct``: score 1, every required solution), so a training curve and an
eval report mean the same thing by accuracy. Runs logged before the two were split wrote the score under
``accuracy``; ``read_metrics`` reads such rows as ``score``.

The update's health, per step (``GRPOTrainer.update``, over trained tokens, all processes): ``entropy`` of the
policy at the rollout temperature; ``logprob_gap``, the mean ``|logp_trainer - logp_sampler|`` before the
update, and the raw importance weight ``exp(logp_trainer - logp_sampler)``'s ``tis_raw_mean``, ``_std``,
``_min``, ``_max`` and ``tis_capped`` (share above ``tis_cap``; ``tis_weight`` is the mean weight applied);
``grad_norm`` before clipping; ``kl`` to the reference (only with ``kl_coef > 0``) and ``update_kl``, KL from
the policy before the step to after it; ``groups_without_signal``; ``trained_tokens/organizer`` and
``/worker``.

A run on several modes (``RLConfig.modes``) also logs, per mode, the means of ``MODE_MEANS`` over that mode's
episodes: ``score_<mode>``, ``accuracy_<mode>``, ``reward_<mode>``, ``forks_<mode>``, ``latency_<mode>``
(underscores: keys with a ``/`` are counts, summed over processes). A run on one mode logs none of them.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from asyncthink.envs.rewards import RewardBreakdown
from asyncthink.episode import Episode, EpisodeStatus, Outcome
from asyncthink.eval.stats import is_correct
from asyncthink.training.rl_batch import signal_groups

CURVES = [("reward", "reward"), ("accuracy", "accuracy (fully correct)"), ("score", "score (partial credit)"),
          ("score_asyncthink", "score: AsyncThink rollouts"), ("score_sequential", "score: sequential rollouts"),
          ("eta_over_capacity", "eta / capacity"), ("latency", "critical-path latency"),
          ("format_error_rate", "format error rate"), ("forks", "forks per episode"), ("loss", "loss"),
          ("kl", "KL to reference"), ("clip_fraction", "clipped"),
          ("entropy", "policy entropy (trained tokens)"), ("logprob_gap", "|logp trainer - logp sampler|"),
          ("tis_raw_max", "max importance weight (before cap)"), ("grad_norm", "grad norm (before clip)"),
          ("update_kl", "KL(before step || after)"), ("groups_without_signal", "groups without signal"),
          ("trained_tokens/organizer", "trained tokens: organizer"), ("trained_tokens/worker",
                                                                     "trained tokens: worker")]
"""The panels of ``curves.png``: (metrics key, title); a key the run never logged gets no panel."""
CURVE_COLUMNS = 6
MODE_MEANS = ("score", "accuracy", "reward", "forks", "latency")
"""The means logged per mode (``<name>_<mode>``) by a run on several modes."""


def mode_stats(episodes: list[Episode], modes: Sequence[str]) -> dict[str, tuple[float, float]]:
    """With more than one of ``modes``: the sum and the count behind each ``MODE_MEANS`` mean over each mode's
    episodes, keyed ``<name>_<mode>``; nothing with one mode. Every mode of ``modes`` has its keys, ``(0, 0)``
    when none of ``episodes`` is in it, so every process has the same keys and a mean over processes can
    weigh each by its count (``GRPOTrainer.log``)."""
    if len(modes) < 2:
        return {}
    out: dict[str, tuple[float, float]] = {}
    for mode in modes:
        terms = _mean_terms([ep for ep in episodes if ep.mode == mode])
        out.update({f"{name}_{mode}": (float(sum(terms[name])), float(len(terms[name]))) for name in MODE_MEANS})
    return out


def _mean_terms(episodes: list[Episode]) -> dict[str, list[float]]:
    """The values each ``MODE_MEANS`` mean is over (``reward``: the episodes the update can use)."""
    return {
        # over the episodes the update can use: an engine failure's reward is nobody's signal
        "reward": [ep.reward or 0.0 for ep in episodes if ep.status != EpisodeStatus.ERROR],
        "score": [ep.score or 0.0 for ep in episodes],
        "accuracy": [float(is_correct(ep)) for ep in episodes],
        "latency": [ep.metrics.get("latency", 0.0) for ep in episodes],
        "forks": [ep.metrics.get("forks", 0.0) for ep in episodes],
    }


def episode_stats(episodes: list[Episode], modes: Sequence[str] = ()) -> dict[str, float]:
    """Means over a step's episodes, and counts: ``status/<outcome>`` and ``format_error/<code>``.

    The counts are by ``Episode.outcome``: ``status/error`` counts engine failures and ``status/runtime_error``
    exceptions inside the runtime (both records have status ``error``, and neither is trained). ``accuracy``
    and ``score`` are over every episode, a failed one counting 0, as in the evaluator's report. With more
    than one of ``modes``, also each mode's means (``mode_stats``; 0 for a mode without episodes).
    """
    n = max(1, len(episodes))

    def mean(values) -> float:
        values = list(values)
        return sum(values) / max(1, len(values))

    codes = collections.Counter(code for ep in episodes for code in set(ep.error_codes))
    outcomes = collections.Counter(ep.outcome for ep in episodes)
    terms = _mean_terms(episodes)
    stats = {
        "reward": mean(terms["reward"]),
        "score": mean(terms["score"]),
        "accuracy": mean(terms["accuracy"]),
        "format_error_rate": sum(ep.has_format_error for ep in episodes) / n,
        "eta_over_capacity": mean(ep.metrics.get("eta_over_capacity", 0.0) for ep in episodes),
        "latency": mean(terms["latency"]),
        "forks": mean(terms["forks"]),
        "generated_tokens": float(sum(ep.metrics.get("total_tokens", 0.0) for ep in episodes)),
    }
    stats.update({key: total / max(1.0, count) for key, (total, count) in mode_stats(episodes, modes).items()})
    stats.update({f"status/{s}": float(outcomes.get(s, 0)) for s in Outcome})
    stats.update({f"format_error/{code}": float(count) for code, count in sorted(codes.items())})
    return stats


def signal_stats(breakdowns: list[RewardBreakdown], advantages: list[float | None], group_size: int,
                 tau: float) -> dict[str, float]:
    """Does the step carry signal? Over the trained episodes: the share whose ``eta / capacity`` reached the
    concurrency cap ``tau``, the mean within-group spread (std) of ``R_concurrency`` and of the advantage, and
    the share of groups whose advantages are all 0 (nothing learned from them)."""
    kept = [k for k, a in enumerate(advantages) if a is not None]
    groups = [[k for k in range(g, g + group_size) if advantages[k] is not None]
              for g in range(0, len(advantages), group_size)]
    groups = [g for g in groups if g]
    signal = [s for s in signal_groups(advantages, group_size) if s is not None]

    def spread(values: list[float]) -> float:
        mu = sum(values) / len(values)
        return (sum((v - mu) ** 2 for v in values) / len(values)) ** 0.5

    def mean(values: list[float]) -> float:
        return sum(values) / max(1, len(values))

    return {
        "at_concurrency_cap": mean([float(breakdowns[k].eta_over_capacity >= tau) for k in kept]),
        "concurrency_reward_spread": mean([spread([breakdowns[k].concurrency for k in g]) for g in groups]),
        "advantage_spread": mean([spread([advantages[k] for k in g]) for g in groups]),
        "groups_without_signal": mean([float(not s) for s in signal]),
        "dropped_episodes": float(len(advantages) - len(kept)),
    }


def console_line(step: int, m: dict[str, float]) -> str:
    """One line per step: outcomes first (status counts, format errors by code), then signal, then loss."""
    codes = ",".join(f"{k.split('/', 1)[1]}:{v:.0f}" for k, v in m.items() if k.startswith("format_error/") and v)
    status = (f"ok={m.get('status/ok', 0):.0f} format_error={m.get('status/format_error', 0):.0f}"
              f"+budget={m.get('status/budget_exceeded', 0):.0f}" + (f" ({codes})" if codes else "")
              + f" error={m.get('status/error', 0):.0f} runtime_error={m.get('status/runtime_error', 0):.0f}")
    shown = ("reward", "accuracy", "score", "eta_over_capacity", "at_concurrency_cap", "concurrency_reward_spread",
             "advantage_spread", "groups_without_signal", "trained_tokens/organizer", "trained_tokens/worker",
             "latency", "forks", "loss", "entropy", "logprob_gap", "tis_raw_std", "tis_raw_max", "grad_norm", "kl",
             "update_kl", "clip_fraction", "tokens_per_s", "step_s")
    return f"[bold]step {step}[/] {status}  " + "  ".join(f"{k}={m[k]:.3g}" for k in shown if k in m)


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
        self.console.print(console_line(step, metrics))

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
    later row of a step is the one the final model descends from, so it wins. A row from before ``score``
    was logged has the partial-credit score under ``accuracy``: it is read as ``score``, with no accuracy."""
    rows = [_renamed(json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]
    return sorted({row["step"]: row for row in rows}.values(), key=lambda row: row["step"])


def _renamed(row: dict[str, Any]) -> dict[str, Any]:
    if "accuracy" in row and "score" not in row:
        row["score"] = row.pop("accuracy")
    return row


def plot_curves(metrics_path: str | Path, png: str | Path, title: str = "RL") -> Path | None:
    """A grid of the run's curves; returns the PNG path (or None with no metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics_path)
    if not rows:
        return None
    curves = [(key, label) for key, label in CURVES if any(key in r for r in rows)]  # e.g. no reference: no KL
    n_rows = -(-len(curves) // CURVE_COLUMNS)
    fig, axes = plt.subplots(n_rows, CURVE_COLUMNS, figsize=(3.6 * CURVE_COLUMNS, 3.2 * n_rows), squeeze=False)
    steps = [r["step"] for r in rows]
    for ax in axes.flat[len(curves):]:
        ax.set_visible(False)
    for ax, (key, label) in zip(axes.flat, curves, strict=False):
        ax.plot(steps, [r.get(key, float("nan")) for r in rows], marker=".", linewidth=1)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)


FIGURE6 = [("accuracy", "accuracy (fully correct)"), ("score", "score (partial credit)"),
           ("latency", "critical-path latency (tokens)"), ("eta_over_capacity", "eta / capacity"),
           ("forks", "forks per episode")]
"""The paper's Figure 6 panels (what RL changes, step by step), with the partial-credit score beside accuracy."""
HEALTH = [("reward", "reward (training prompts)"), ("score", "score (partial credit)"),
          ("entropy", "policy entropy (trained tokens)"), ("update_kl", "KL(before step || after)"),
          ("grad_norm", "grad norm (before clip)")]
"""Panels that tell a run that learns from one that drifts: reward, entropy and how far each step moves."""


def plot_runs(runs: dict[str, str | Path], png: str | Path, title: str = "RL", smooth: int = 5,
              panels: list[tuple[str, str]] = FIGURE6) -> Path | None:
    """Several runs' curves overlaid, one panel per metric of ``panels`` (moving mean over ``smooth`` steps,
    raw values faint behind); runs without metrics are left out. Returns the PNG path, or None if none had any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {label: read_metrics(path) for label, path in runs.items() if Path(path).is_file()}
    rows = {label: r for label, r in rows.items() if r}
    if not rows:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    for ax, (key, name) in zip(axes.flat, panels, strict=True):
        for k, (label, run) in enumerate(rows.items()):
            steps, values = [r["step"] for r in run], [r.get(key, float("nan")) for r in run]
            ax.plot(steps, values, color=f"C{k}", alpha=0.25, linewidth=0.8)
            ax.plot(steps, _moving_mean(values, smooth), color=f"C{k}", label=label, linewidth=1.6)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("RL step", fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)


def _moving_mean(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        recent = [v for v in values[max(0, i + 1 - window): i + 1] if v == v]  # NaN != NaN: skip missing
        out.append(sum(recent) / len(recent) if recent else float("nan"))
    return out

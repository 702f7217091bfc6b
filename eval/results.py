"""The entries of a shipped model's ``results.json``: evaluated runs, paired comparisons, seed spread, training.

Each shipped model keeps a ``results.json`` beside it, and its docs' tables are generated from it. The scripts
that write one (``scripts/ablation.py``, ``scripts/math_rl_results.py``, ``scripts/smollm2_results.py``) build
it from these entries, so every file has the keys other tools read:

- ``runs``: one per mode x checkpoint x seed: ``mode``, ``checkpoint``, ``seed``, ``n``, ``clusters``,
  ``accuracy``, ``accuracy_ci``, ``score``, ``latency``, ``eta_over_capacity``, ``forks``, ``format_errors``,
  ``statuses`` (``run_entry``);
- ``comparisons``: ``b - a`` of one metric on the same problems: ``a``, ``b``, ``metric``, ``diff``, ``ci``
  (95 %, a bootstrap over clusters of related problems), ``clusters``, ``n_problems``, ``seeds`` (the RL seeds
  pooled into it), ``significant`` (``comparison_entry``);
- ``seed_spread``: the mean and standard deviation across seeds of a per-seed difference (``seed_spread``);
- ``training``: an RL run's reward, score and accuracy over its first and last steps, and its update's health
  (``training_entry``).

Scripts add their own keys to these entries (the held-out list, the arm, ...).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from asyncthink.episode import Episode

N_BOOT = 2000
"""Bootstrap resamples of each comparison."""
METRICS = ("accuracy", "latency", "eta_over_capacity")
"""The metrics compared by default."""
WINDOW = 10
"""Steps averaged at each end of a training curve."""


def load_eval(folder: str | Path, task: str | None = None) -> dict[str, tuple[dict, list[Episode]]]:
    """``mode -> (summary row, episodes)`` of one evaluation folder, for ``task`` (a task label; may be omitted
    when the folder holds one task)."""
    from asyncthink.episode import read_jsonl

    folder = Path(folder)
    rows = json.loads((folder / "summary.json").read_text())["results"]
    tasks = sorted({r["task"] for r in rows})
    if task is None and len(tasks) > 1:
        raise ValueError(f"{folder} holds tasks {tasks}: say which")
    rows = [r for r in rows if task is None or r["task"] == task]
    if not rows:
        raise ValueError(f"{folder} holds no task {task!r}, only {tasks}")
    return {r["mode"]: (r, list(read_jsonl(folder / r["records"]))) for r in rows}


def run_entry(row: dict, checkpoint: str, seed: int | None, **extra: Any) -> dict[str, Any]:
    """One evaluated mode x checkpoint x seed, from its ``summary.json`` row."""
    return {"mode": row["mode"], "checkpoint": checkpoint, "seed": seed, **extra, "n": row["n_episodes"],
            "clusters": row["n_clusters"], "accuracy": row["accuracy"], "accuracy_ci": row["accuracy_ci"],
            "score": row["mean_score"], "latency": row["latency_mean"],
            "eta_over_capacity": row["eta_over_capacity"], "forks": row["forks_per_episode"],
            "format_errors": row["format_error_rate"], "statuses": row["statuses"]}


def comparison_entry(a: Sequence[Episode], b: Sequence[Episode], metric: str, a_name: str, b_name: str,
                     seeds: list[int], n_boot: int = N_BOOT, **extra: Any) -> dict[str, Any]:
    """``b - a`` of ``metric`` paired over the problems both sides have, with its clustered interval."""
    from asyncthink.eval.compare import compare

    c = compare(a, b, metric, a_name, b_name, n_boot=n_boot)
    return {"a": c.a, "b": c.b, "metric": metric, **extra, "diff": c.diff, "ci": list(c.ci),
            "clusters": c.clusters, "n_problems": c.problems, "seeds": seeds, "significant": c.significant}


def seed_spread(per_seed: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The mean and standard deviation across seeds of one difference (``comparison_entry`` per seed)."""
    diffs = [c["diff"] for c in per_seed]
    first = per_seed[0]
    return {"a": first["a"], "b": first["b"], "metric": first["metric"], **extra,
            "seeds": [s for c in per_seed for s in c["seeds"]], "mean": statistics.fmean(diffs),
            "std": statistics.stdev(diffs) if len(diffs) > 1 else 0.0}


def training_entry(folder: str | Path, window: int = WINDOW, **extra: Any) -> dict[str, Any]:
    """What an RL run (its ``metrics.jsonl``) did on its own training prompts, and how healthy its updates were:
    outcomes over the first and last ``window`` steps, update diagnostics over the run, status counts."""
    from asyncthink.training.rl_logging import read_metrics

    folder = Path(folder)
    rows = read_metrics(folder / "metrics.jsonl")
    first, last = rows[:window], rows[-window:]
    entry: dict[str, Any] = {**extra, "steps": len(rows), "wall_s": _wall(folder)}
    for key in ("reward", "score", "accuracy", "eta_over_capacity", "forks", "entropy"):
        entry[f"{key}_first{window}"], entry[f"{key}_last{window}"] = _mean(key, first), _mean(key, last)
    for key in ("logprob_gap", "tis_capped", "grad_norm", "update_kl", "groups_without_signal", "kl"):
        entry[key] = _mean(key, rows)
    entry["update_kl_step0"] = rows[0].get("update_kl") if rows else None
    entry["tis_raw_max"] = max((r.get("tis_raw_max", 0.0) for r in rows), default=None)
    organizer = sum(r.get("trained_tokens/organizer", 0.0) for r in rows)
    worker = sum(r.get("trained_tokens/worker", 0.0) for r in rows)
    entry["worker_token_share"] = worker / max(1.0, organizer + worker)
    entry["statuses"] = {k.split("/", 1)[1]: int(sum(r.get(k, 0) for r in rows))
                         for k in sorted({k for r in rows for k in r if k.startswith("status/")})}
    return entry


def _mean(key: str, rows: list[dict]) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.fmean(values) if values else None


def _wall(folder: Path) -> float | None:
    """The run's wall time, where its launcher recorded one (``wall_s.txt``)."""
    path = folder / "wall_s.txt"
    return float(path.read_text()) if path.exists() else None

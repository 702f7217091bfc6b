"""What a run writes from its records: ``summary.json``, ``report.md``, the plots and showcase pages.

Everything here is rebuilt from the records of the planned episodes, so a
resumed or ``report_only`` run gives the same files as an uninterrupted one.
For each task one AsyncThink episode is showcased (a timeline PNG and an
HTML page): at the largest budget, preferring an episode that forked and was
correct, then the one with the most forks, then the longest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asyncthink.config_io import to_dict
from asyncthink.episode import Episode, EpisodeStatus
from asyncthink.eval.compare import compare
from asyncthink.eval.config import EvalConfig, budget_label, public_config
from asyncthink.eval.html_view import write_episode_html
from asyncthink.eval.plots import accuracy_vs_latency, latency_distributions
from asyncthink.eval.report import method_label, render_report
from asyncthink.eval.stats import is_correct, metrics_of, summarize
from asyncthink.eval.store import RecordStore, RunKey
from asyncthink.eval.timeline import save_timeline
from asyncthink.modes import Mode


def result_rows(cfg: EvalConfig, runs: list, done: dict[RunKey, dict[str, Episode]],
                store: RecordStore) -> tuple[list[dict[str, Any]], dict[RunKey, list[Episode]]]:
    """Per-run figures from the records of each run's planned episodes (in item order)."""
    rows, records = [], {}
    for run in runs:
        eps = [done[run.key][i.episode_id] for i in run.items if i.episode_id in done[run.key]]
        records[run.key] = eps
        row = {"task": run.key.task, "mode": run.key.mode, "budget": run.key.budget,
               "budget_label": budget_label(run.key.budget), "expected_episodes": len(run.items),
               "complete": len(eps) == len(run.items), "records": str(store.path(run.key).relative_to(store.root))}
        rows.append(row | summarize(eps, cfg.bootstrap, cfg.ci, cfg.seed))
    return rows, records


def showcase(records: dict[RunKey, list[Episode]], task: str) -> tuple[RunKey, Episode] | None:
    keys = [k for k, eps in records.items() if k.task == task and eps]
    if not keys:
        return None
    key = max([k for k in keys if Mode(k.mode).spec.forks] or keys, key=lambda k: k.budget)

    def rank(ep: Episode) -> tuple:
        forks = metrics_of(ep)["forks"] if ep.status != EpisodeStatus.ERROR else -1
        return forks > 0, is_correct(ep), forks, metrics_of(ep)["latency"]

    return key, max(records[key], key=rank)


def write_plots(cfg: EvalConfig, out: Path, results: list[dict[str, Any]],
                records: dict[RunKey, list[Episode]]) -> dict[str, Any]:
    labels = {k: method_label(k.mode, budget_label(k.budget)) for k in records}
    written: dict[str, Any] = {
        "accuracy_vs_latency": _rel(accuracy_vs_latency(results, out / "plots" / "accuracy_vs_latency.png"), out),
        "latency_distribution": _rel(latency_distributions(records, labels, out / "plots" / "latency_distribution.png"),
                                     out),
        "timelines": {},
    }
    for task in dict.fromkeys(k.task for k in records):
        pick = showcase(records, task)
        if pick is None:
            continue
        key, ep = pick
        title = f"{task} · {labels[key]} · episode {ep.episode_id}"
        png = save_timeline(ep, out / "plots" / f"timeline_{task}.png", cfg.runtime.prefill_cost, title)
        html = write_episode_html(ep, out / "episodes" / f"{task}.html", title)
        written["timelines"][task] = {"episode": ep.episode_id, "method": labels[key], "png": _rel(png, out),
                                      "html": _rel(html, out)}
    return written


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


PAIRED_METRICS = ("accuracy", "latency", "eta_over_capacity")


def mode_comparisons(cfg: EvalConfig, records: dict[RunKey, list[Episode]]) -> list[dict[str, Any]]:
    """AsyncThink against every other mode of the same task and budget, paired over problems."""
    out = []
    for key, eps in sorted(records.items()):
        if not Mode(key.mode).spec.forks or not eps:
            continue
        for other, other_eps in sorted(records.items()):
            if (other.task, other.budget) != (key.task, key.budget) or other == key or not other_eps:
                continue
            for metric in PAIRED_METRICS:
                c = compare(other_eps, eps, metric, method_label(other.mode, budget_label(other.budget)),
                            method_label(key.mode, budget_label(key.budget)), cfg.bootstrap, cfg.ci, cfg.seed)
                out.append({"task": key.task} | c.to_dict())
    return out


def write_outputs(cfg: EvalConfig, out: Path, runs: list, done: dict[RunKey, dict[str, Episode]],
                  meta: dict[str, Any]) -> dict[str, Any]:
    """Write summary, report and plots; return the summary."""
    results, records = result_rows(cfg, runs, done, RecordStore(out))
    summary: dict[str, Any] = {"meta": meta, "config": to_dict(public_config(cfg)), "results": results,
                               "comparisons": mode_comparisons(cfg, records)}
    if cfg.plots and any(records.values()):
        summary["plots"] = write_plots(cfg, out, results, records)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(render_report(summary), encoding="utf-8")
    return summary

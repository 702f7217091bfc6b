"""``report.md``: the paper-style table (accuracy / latency per method per task), then the details.

The report is rendered from ``summary.json``'s content alone, so it can be
rebuilt from a results directory at any time. Accuracy is in percent;
latency is the mean critical-path latency in tokens; intervals are bootstrap
CIs at the configured level that resample clusters of related problems (each
task table says how many problems and clusters it has). A method whose run is
incomplete (missing episodes) is marked with ``*``.
"""

from __future__ import annotations

from typing import Any

from asyncthink.eval.compare import comparison_table
from asyncthink.modes import Mode


def method_label(mode: str, budget_label: str) -> str:
    return f"{Mode(mode).spec.label} {budget_label}"


def _num(x: float | None, digits: int = 1, scale: float = 1.0) -> str:
    return "–" if x is None else f"{x * scale:.{digits}f}"


def _ci(ci: list[float] | None, digits: int = 1, scale: float = 1.0) -> str:
    return "" if ci is None else f" [{ci[0] * scale:.{digits}f}, {ci[1] * scale:.{digits}f}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _methods(results: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """(mode, budget, budget label) in budget order, modes in the order they were run."""
    modes = list(dict.fromkeys(r["mode"] for r in results))
    seen = {(r["mode"], r["budget"]): r["budget_label"] for r in results}
    return [(m, b, seen[(m, b)]) for b in sorted({r["budget"] for r in results}) for m in modes if (m, b) in seen]


def paper_table(results: list[dict[str, Any]]) -> list[str]:
    """Methods as rows, tasks as columns, cells ``accuracy / latency``."""
    tasks = list(dict.fromkeys(r["task"] for r in results))
    index = {(r["task"], r["mode"], r["budget"]): r for r in results}
    rows = []
    for mode, budget, label in _methods(results):
        cells = [method_label(mode, label)]
        for task in tasks:
            r = index.get((task, mode, budget))
            cells.append("–" if r is None else
                         f"{_num(r['accuracy'], 1, 100)} / {_num(r['latency_mean'], 0)}{'' if r['complete'] else '*'}")
        rows.append(cells)
    return _table(["method", *[f"{t} acc / latency" for t in tasks]], rows)


def task_table(results: list[dict[str, Any]], task: str) -> list[str]:
    rows_in = [r for r in results if r["task"] == task]
    at_least = sorted({a for r in rows_in for a in r["at_least"]}, key=int)
    header = ["method", "episodes", "problems / clusters", "accuracy % [CI]", "mean score", "latency mean [CI]",
              "p50", "p90", "wall s mean / p50 / p90", "tokens / ep", "total tokens", "eta / cap", "forks / ep",
              "joins / ep", "format err %", *[f"≥{a} %" for a in at_least]]
    rows = []
    for r in rows_in:
        rows.append([
            method_label(r["mode"], r["budget_label"]), f"{r['n_episodes']}/{r['expected_episodes']}",
            f"{r['n_problems']} / {r.get('n_clusters', r['n_problems'])}",  # older summaries: no clusters
            _num(r["accuracy"], 1, 100) + _ci(r["accuracy_ci"], 1, 100), _num(r["mean_score"], 3),
            _num(r["latency_mean"], 0) + _ci(r["latency_ci"], 0), _num(r["latency_p50"], 0), _num(r["latency_p90"], 0),
            f"{_num(r['wall_s_mean'], 2)} / {_num(r['wall_s_p50'], 2)} / {_num(r['wall_s_p90'], 2)}",
            _num(r["tokens_per_episode"], 0), _num(r["total_tokens"], 0), _num(r["eta_over_capacity"], 3),
            _num(r["forks_per_episode"], 2), _num(r["joins_per_episode"], 2), _num(r["format_error_rate"], 1, 100),
            *[_num(r["at_least"].get(a), 1, 100) for a in at_least],
        ])
    return _table(header, rows)


def format_error_table(results: list[dict[str, Any]]) -> list[str]:
    codes = sorted({c for r in results for c in r["format_errors"]})
    rows = [[r["task"], method_label(r["mode"], r["budget_label"]), _num(r["format_error_rate"], 1, 100),
             *[_num(r["format_errors"].get(c, 0.0), 1, 100) for c in codes], str(r["errors"])] for r in results]
    return _table(["task", "method", "any %", *[f"{c} %" for c in codes], "engine errors"], rows)


def _header(summary: dict[str, Any]) -> list[str]:
    meta, cfg = summary["meta"], summary["config"]
    rt = cfg["runtime"]
    engine = cfg.get("engine") or {}
    return [
        f"# {cfg['title']}", "",
        f"- model: `{meta['model']}` on the `{meta['engine']}` engine; written {meta['written']}"
        + (f", commit `{meta['commit']}`" if meta.get("commit") else ""),
        f"- sampling: temperature {rt['temperature']}, top-p {rt['top_p']}, top-k {rt['top_k']}; seed {cfg['seed']}; "
        f"the same episode seeds in every mode and budget",
        f"- pool capacity {rt['capacity']} ({rt['pool_policy']} when full), worker budget {rt['max_worker_tokens']} "
        f"tokens, parallel traces {rt['parallel_traces']}, prompts `{rt['prompts']['style']}`"
        + (f", dtype {engine.get('dtype')}" if engine.get("dtype") else ""),
        f"- accuracy = share of fully correct episodes (countdown: all required solutions); latency = mean "
        f"critical-path latency in tokens (parallel: the longest trace); CIs: {cfg['ci']:.0%} bootstrap over "
        f"clusters of related problems, {cfg['bootstrap']} resamples",
        "",
    ]


def render_report(summary: dict[str, Any]) -> str:
    """The whole ``report.md``."""
    results = summary["results"]
    lines = _header(summary) + ["## Accuracy / latency", "", *paper_table(results), ""]
    if any(not r["complete"] for r in results):
        lines += ["`*` incomplete: some episodes are missing (rerun into the same directory to finish).", ""]
    for task in dict.fromkeys(r["task"] for r in results):
        lines += [f"## {task}", "", *task_table(results, task), ""]
    lines += ["## Format errors by code (share of episodes)", "", *format_error_table(results), ""]
    lines += _comparisons(summary.get("comparisons") or [], summary["config"]["ci"])
    lines += _plots(summary.get("plots") or {})
    return "\n".join(lines)


def _comparisons(comparisons: list[dict[str, Any]], ci: float) -> list[str]:
    """Paired differences (b - a) over the same problems, one table per task."""
    if not comparisons:
        return []
    lines = ["## Paired differences between modes (same problems; bootstrap over clusters of problems)", ""]
    for task in dict.fromkeys(c["task"] for c in comparisons):
        lines += [f"### {task}", "", *comparison_table([c for c in comparisons if c["task"] == task], ci), ""]
    return lines


def _plots(plots: dict[str, Any]) -> list[str]:
    if not plots:
        return []
    lines = ["## Plots", ""]
    for name in ("accuracy_vs_latency", "latency_distribution"):
        if name in plots:
            lines += [f"![{name.replace('_', ' ')}]({plots[name]})", ""]
    for task, item in (plots.get("timelines") or {}).items():
        lines += [f"### Timeline: {task}, episode `{item['episode']}` ({item['method']})", "",
                  f"![timeline {task}]({item['png']})", "", f"Full episode: [{item['html']}]({item['html']})", ""]
    return lines

"""Gantt chart of one episode: organizer and worker rows with forks, joins and waits.

Two panels share the rows. The top one is the simulated schedule of the
latency metric (``asyncthink.metrics.simulate``: one step per generated
token), so its right edge is the critical-path latency. The bottom one is
what happened on the wall clock: each row's lifetime, its engine requests, and
the time the organizer spent blocked at each join. Arrows go from the forking
row to the worker it started, and from a finished worker to the row that
joined it. Rows are listed depth first, each worker under the row that forked it.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from asyncthink.episode import Episode, EventKind, Row, RowEvent
from asyncthink.metrics import Timeline, simulate

COLORS = {
    "organizer": "#1f77b4", "worker": "#ff7f0e", "prefill": "#9467bd", "blocked": "#d62728",
    "queued": "#c7c7c7", "alive": "#dddddd", "fork": "#222222", "join": "#2ca02c",
}
_ORDER = {EventKind.FORK: 0, EventKind.JOIN: 1}


def row_order(ep: Episode) -> list[Row]:
    """Top rows in record order, each followed (depth first) by the workers it forked."""
    out: list[Row] = []

    def visit(row: Row) -> None:
        out.append(row)
        for child in ep.children(row.row_id):
            visit(child)

    for row in ep.rows:
        if row.parent is None:
            visit(row)
    return out


def row_label(row: Row) -> str:
    if row.parent is None:
        return f"trace {row.row_id}" if row.row_id.startswith("t") else f"organizer {row.row_id}"
    return f"worker {row.row_id} (#{row.fork_index})"


def _steps(row: Row, lo: int, hi: int, prefill_cost: float) -> float:
    mask = row.completion_mask[lo:hi]
    return sum(mask) + prefill_cost * (len(mask) - sum(mask))


def event_times(row: Row, tl: Timeline, prefill_cost: float = 0.0) -> list[tuple[RowEvent, float, float]]:
    """(event, time the row reached it, time it went on) in simulated steps; they differ at a blocking join."""
    t, pos, out = tl.row_start.get(row.row_id, 0.0), 0, []
    for ev in sorted(row.events, key=lambda e: (e.position, _ORDER[e.kind])):
        t += _steps(row, pos, ev.position, prefill_cost)
        pos = ev.position
        resume = max(t, tl.row_end.get(ev.child, t)) if ev.kind == EventKind.JOIN else t
        out.append((ev, t, resume))
        t = resume
    return out


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], color: str) -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": color, "lw": 1.0,
                                                       "shrinkA": 0, "shrinkB": 0})


def _tag(ax: Axes, x: float, y: float, text: str, color: str) -> None:
    ax.text(x, y - 0.38, text, fontsize=7, color=color, ha="center", va="bottom")


def draw_simulated(ax: Axes, ep: Episode, ys: dict[str, int], prefill_cost: float = 0.0) -> Timeline:
    """The simulated schedule of ``ep`` on ``ax`` (rows at ``ys``)."""
    tl = simulate(ep, prefill_cost)
    for seg in tl.segments:
        if seg.row_id not in ys:
            continue
        role = "worker" if ep.row(seg.row_id).parent else "organizer"
        color = COLORS[role] if seg.kind == "generate" else COLORS[seg.kind]
        hatch = "//" if seg.kind == "blocked" else None
        ax.barh(ys[seg.row_id], seg.end - seg.start, left=seg.start, height=0.55, color=color, hatch=hatch,
                alpha=0.55 if seg.kind == "blocked" else 1.0, edgecolor="white", linewidth=0.3)
    for row in ep.rows:
        for ev, reached, resume in event_times(row, tl, prefill_cost):
            _draw_event_sim(ax, ev, row, reached, resume, tl, ys)
    ax.axvline(tl.latency, color="black", lw=0.8, ls=":")
    ax.set_xlabel("simulated steps (1 per generated token)")
    return tl


def _draw_event_sim(ax: Axes, ev: RowEvent, row: Row, reached: float, resume: float, tl: Timeline,
                    ys: dict[str, int]) -> None:
    if ev.child not in ys:
        return
    y, yc = ys[row.row_id], ys[ev.child]
    if ev.kind == EventKind.FORK:
        _arrow(ax, (reached, y), (tl.row_start.get(ev.child, reached), yc), COLORS["fork"])
        _tag(ax, reached, y, f"F{ev.index}", COLORS["fork"])
    else:
        _arrow(ax, (tl.row_end.get(ev.child, resume), yc), (resume, y), COLORS["join"])
        _tag(ax, resume, y, f"J{ev.index}", COLORS["join"])


def draw_wall(ax: Axes, ep: Episode, ys: dict[str, int]) -> None:
    """Row lifetimes, engine requests and join waits on the wall clock."""
    for row in ep.rows:
        if row.row_id not in ys:
            continue
        y = ys[row.row_id]
        ax.barh(y, row.end_s - row.start_s, left=row.start_s, height=0.7, color=COLORS["alive"])
        color = COLORS["worker"] if row.parent else COLORS["organizer"]
        for span in row.requests:
            ax.barh(y, span.end_s - span.start_s, left=span.start_s, height=0.45, color=color)
        for ev in row.events:
            _draw_event_wall(ax, ep, row, ev, ys)
    ax.set_xlabel("wall clock (s)")


def _draw_event_wall(ax: Axes, ep: Episode, row: Row, ev: RowEvent, ys: dict[str, int]) -> None:
    if ev.child not in ys:
        return
    y, child = ys[row.row_id], ep.row(ev.child)
    if ev.kind == EventKind.FORK:
        _arrow(ax, (ev.time_s, y), (child.start_s, ys[child.row_id]), COLORS["fork"])
        _tag(ax, ev.time_s, y, f"F{ev.index}", COLORS["fork"])
        return
    if ev.wait_s > 0:
        ax.barh(y, ev.wait_s, left=ev.time_s, height=0.55, color=COLORS["blocked"], alpha=0.55, hatch="//")
    _arrow(ax, (child.end_s, ys[child.row_id]), (ev.time_s + ev.wait_s, y), COLORS["join"])
    _tag(ax, ev.time_s + ev.wait_s, y, f"J{ev.index}", COLORS["join"])


def _legend() -> list[Patch]:
    names = [("organizer", "organizer generating"), ("worker", "worker generating"),
             ("prefill", "appended (prefill)"), ("blocked", "blocked at join"), ("queued", "queued (pool full)"),
             ("alive", "row alive (wall)"), ("fork", "fork ->"), ("join", "join ->")]
    return [Patch(color=COLORS[k], label=label) for k, label in names]


def timeline_figure(ep: Episode, prefill_cost: float = 0.0, title: str | None = None) -> Figure:
    """Both panels for ``ep``, ready to save."""
    rows = row_order(ep)
    ys = {r.row_id: k for k, r in enumerate(rows)}
    height = 0.45 * max(len(rows), 2) + 1.3
    fig = Figure(figsize=(11, 2 * height + 0.9), layout="constrained")
    FigureCanvasAgg(fig)
    sim, wall = fig.subplots(2, 1)
    tl = draw_simulated(sim, ep, ys, prefill_cost)
    draw_wall(wall, ep, ys)
    for ax, name in ((sim, "simulated steps"), (wall, "wall clock")):
        ax.set_yticks(range(len(rows)), [row_label(r) for r in rows], fontsize=8)
        ax.set_ylim(len(rows) - 0.4, -0.8)
        ax.set_xlim(left=0)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(name, fontsize=9, loc="left")
    m = ep.metrics
    heading = title or f"{ep.task or 'episode'} · {ep.mode} · {ep.episode_id}"
    fig.suptitle(f"{heading}\nlatency {tl.latency:.0f} steps · eta {m.get('eta', 0):.2f} · "
                 f"{len(ep.rows) if ep.mode.spec.traces else len(ep.rows) - 1} "
                 f"{'traces' if ep.mode.spec.traces else 'workers'} · wall {ep.wall_s:.2f}s · "
                 f"status {ep.status} · score {ep.score}", fontsize=10)
    fig.legend(handles=_legend(), loc="outside lower center", ncols=8, fontsize=7, frameon=False)
    return fig


def save_timeline(ep: Episode, path: str | Path, prefill_cost: float = 0.0, title: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    timeline_figure(ep, prefill_cost, title).savefig(path, dpi=120)
    return path

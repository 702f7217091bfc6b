"""Show an episode in the terminal (rich): the organizer's text with each fork's sub-query marked and each
worker's return shown where it was joined, then the workers' own text and the metrics.

The one terminal viewer (``asyncthink solve``, ``asyncthink view``, the demo).
Needs only the record, not the model: text comes from the record's stored row
text, split at forks and joins by ``asyncthink.transcript``.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from asyncthink.episode import Episode, Row
from asyncthink.metrics import episode_metrics
from asyncthink.transcript import pieces, returned_text


def row_text(ep: Episode, row: Row) -> Text:
    out = Text()
    for p in pieces(ep, row):
        if p.kind == "fork":
            out.append(p.raw, style="bold yellow")
            out.append(f" [→ worker {p.child}]", style="dim")
        elif p.kind == "join":
            tokens = ep.row(p.child).generated_tokens if p.child and p.child in {r.row_id for r in ep.rows} else 0
            out.append(f"<JOIN-{p.index}>", style="bold green")
            out.append(f" ⟵ worker {p.child} ({tokens} tokens, waited {p.wait_s:.2f}s): ", style="dim italic")
            out.append(p.text, style="green")
            out.append(f"</JOIN-{p.index}>", style="bold green")
        else:
            out.append(p.text)
    return out


def _worker_panel(ep: Episode, row: Row) -> Panel:
    body = Text()
    body.append("sub-query: ", style="bold")
    body.append((row.subquery or "") + "\n")
    body.append("returned: ", style="bold")
    body.append(returned_text(row) + "\n\n", style="green")
    body.append_text(row_text(ep, row))
    title = f"worker {row.row_id} (#{row.fork_index}) · {row.generated_tokens} tokens · {row.finish_reason}"
    return Panel(body, title=title, border_style="yellow")


def episode_view(ep: Episode) -> Group:
    parts: list = [Panel(Text(ep.question), title=f"question · {ep.task} · {ep.mode} · episode {ep.episode_id}")]
    for row in ep.rows:
        if row.parent is None:
            role = ep.mode.spec.top_role
            parts.append(Panel(row_text(ep, row), title=f"{role} {row.row_id} · {row.generated_tokens} tokens"))
    parts += [_worker_panel(ep, r) for r in ep.rows if r.parent is not None]
    parts.append(metrics_table(ep))
    return Group(*parts)


def metrics_table(ep: Episode) -> Table:
    table = Table(title="metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [("status", str(ep.status)), ("answer", repr(ep.answer)), ("score", str(ep.score))]
    rows += [(k, f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in ep.metrics.items()]
    if ep.format_errors:
        rows.append(("format errors", ", ".join(f"{e.code} ({e.detail}) in row {e.row_id}" for e in ep.format_errors)))
    if ep.error:
        rows.append(("error", ep.error))
    for name, value in rows:
        table.add_row(name, value)
    return table


def episodes_table(episodes: Sequence[Episode]) -> Table:
    """One line per record of a file, for picking ``--index``."""
    table = Table(title=f"{len(episodes)} episodes")
    for col in ("index", "id", "task", "mode", "status", "score", "latency", "forks", "wall s"):
        table.add_column(col, justify="right" if col in ("index", "score", "latency", "forks", "wall s") else "left")
    for k, ep in enumerate(episodes):
        m = ep.metrics or episode_metrics(ep)
        table.add_row(str(k), ep.episode_id, str(ep.task), str(ep.mode), str(ep.status), str(ep.score),
                      f"{m['latency']:.0f}", f"{m['forks']:.0f}", f"{ep.wall_s:.2f}")
    return table


def print_episode(ep: Episode, console: Console | None = None) -> None:
    (console or Console()).print(episode_view(ep))

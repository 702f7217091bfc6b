"""Show an episode in the terminal: organizer text with each worker's return where it was joined.

Text is decoded from the record's token ids when a tokenizer is given, else
taken from the record's stored text (the viewer works without the model).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from asyncthink.episode import Episode, EventKind, Row


def row_segments(row: Row, tokenizer: Any = None) -> list[tuple[str, bool]]:
    """The row's completion as (text, generated?) runs, in order."""
    if tokenizer is None:
        return [(row.text, True)]
    runs, start = [], 0
    mask = row.completion_mask
    for k in range(1, len(mask) + 1):
        if k == len(mask) or mask[k] != mask[start]:
            runs.append((tokenizer.decode(row.completion_ids[start:k], skip_special_tokens=False), bool(mask[start])))
            start = k
    return runs


def organizer_text(ep: Episode, row: Row, tokenizer: Any = None) -> Text:
    """The row's text; appended worker returns are highlighted and labelled with their worker."""
    joins = iter([e for e in row.events if e.kind == EventKind.JOIN])
    out = Text()
    for text, generated in row_segments(row, tokenizer):
        if generated:
            out.append(text)
            continue
        join = next(joins, None)
        label = f" ⟵ worker {join.index} ({_tokens(ep, join.child)} tokens, waited {join.wait_s:.2f}s) " if join else ""
        out.append(text, style="bold green")
        out.append(label, style="dim italic")
    return out


def _tokens(ep: Episode, row_id: str | None) -> int:
    try:
        return ep.row(row_id).generated_tokens if row_id else 0
    except KeyError:
        return 0


def workers_table(ep: Episode) -> Table:
    table = Table(title="workers", show_lines=False)
    for col in ("row", "fork", "sub-query", "tokens", "returned", "finish"):
        table.add_column(col, overflow="fold")
    for r in ep.rows:
        if r.parent is None:
            continue
        table.add_row(r.row_id, str(r.fork_index), (r.subquery or "")[:200], str(r.generated_tokens),
                      (r.returned or _return_text(r))[:200], r.finish_reason or "")
    return table


def _return_text(row: Row) -> str:
    text = row.text
    a, b = text.rfind("<RETURN>"), text.rfind("</RETURN>")
    return text[a + len("<RETURN>") : b] if 0 <= a < b else ""


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


def episode_view(ep: Episode, tokenizer: Any = None) -> Group:
    parts: list[Any] = [Panel(Text(ep.question), title=f"question ({ep.mode}, episode {ep.episode_id})")]
    for row in ep.rows:
        if row.parent is None:
            parts.append(Panel(organizer_text(ep, row, tokenizer), title=f"{row.role} {row.row_id}"))
    if any(r.parent is not None for r in ep.rows):
        parts.append(workers_table(ep))
    parts.append(metrics_table(ep))
    return Group(*parts)


def print_episode(ep: Episode, tokenizer: Any = None, console: Console | None = None) -> None:
    (console or Console()).print(episode_view(ep, tokenizer))

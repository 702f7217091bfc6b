"""One episode as a self-contained HTML page: inline CSS, the timeline as an inline PNG, no scripts.

The organizer's text runs top to bottom; each fork shows its sub-query and
links to the worker's card, and each join shows, where it happened, what the
worker returned and how long the organizer waited. Workers (and, with
recursion, their own workers) follow as cards with their full text. All
model text goes through ``html.escape``: a page never runs what a model wrote.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

from asyncthink.episode import Episode, Row
from asyncthink.transcript import Piece, pieces, returned_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
  padding:0 1rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
.badges span{display:inline-block;margin:0 .4rem .4rem 0;padding:.15rem .5rem;border-radius:.6rem;background:#eee;
  font-size:.85rem}
.ok{background:#d4f4d4!important}.bad{background:#f8d4d4!important}
pre,.text{white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85rem}
.text{background:#fafafa;border:1px solid #e4e4e4;border-radius:.4rem;padding:.8rem;line-height:1.45}
.fork{background:#fff1dc;border:1px solid #f0b060;border-radius:.3rem;padding:0 .2rem}
.join{display:block;margin:.4rem 0 .4rem 1.2rem;padding:.4rem .6rem;background:#e6f5e6;border-left:4px solid #2ca02c}
.join .meta,.fork .meta{font-family:system-ui,sans-serif;font-size:.75rem;color:#555}
.card{border:1px solid #ddd;border-radius:.4rem;margin:.8rem 0;padding:.4rem .8rem}
.card summary{cursor:pointer;font-weight:600}
table{border-collapse:collapse;font-size:.85rem}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
img{max-width:100%}
"""


def _fork_html(p: Piece) -> str:
    link = f' <a class="meta" href="#row-{escape(p.child)}">→ worker {escape(p.child)}</a>' if p.child else ""
    return f'<span class="fork">&lt;FORK-{p.index}&gt;{escape(p.text)}&lt;/FORK-{p.index}&gt;{link}</span>'


def _join_html(ep: Episode, p: Piece) -> str:
    tokens = _tokens(ep, p.child)
    meta = (f"&lt;JOIN-{p.index}&gt; ⟵ worker <a href=\"#row-{escape(p.child or '')}\">{escape(p.child or '?')}</a> "
            f"returned ({tokens} tokens generated, organizer waited {p.wait_s:.2f} s)")
    return f'<span class="join"><span class="meta">{meta}</span><br>{escape(p.text)}</span>'


def _tokens(ep: Episode, row_id: str | None) -> int:
    try:
        return ep.row(row_id).generated_tokens if row_id else 0
    except KeyError:
        return 0


def row_html(ep: Episode, row: Row) -> str:
    """The row's text with its forks and joins marked up."""
    parts = []
    for p in pieces(ep, row):
        if p.kind == "fork":
            parts.append(_fork_html(p))
        elif p.kind == "join":
            parts.append(_join_html(ep, p))
        else:
            parts.append(escape(p.text))
    return f'<div class="text">{"".join(parts)}</div>'


def _badges(ep: Episode) -> str:
    good = ep.status == "ok" and (ep.score or 0) >= 1
    items = [(f"status {ep.status}", "ok" if ep.status == "ok" else "bad"), (f"score {ep.score}", "ok" if good else ""),
             (f"mode {ep.mode}", ""), (f"task {ep.task}", ""), (f"capacity {ep.capacity}", "")]
    items += [(f"{code}", "bad") for code in ep.error_codes]
    return '<div class="badges">' + "".join(f'<span class="{c}">{escape(t)}</span>' for t, c in items) + "</div>"


def _metrics(ep: Episode) -> str:
    rows = [("answer", ep.answer), ("extracted", ep.extracted), *ep.metrics.items()]
    rows += [(f"details.{k}", v) for k, v in (ep.info.get("details") or {}).items()]
    if "votes" in ep.info:
        rows.append(("votes", ep.info["votes"]))
    rows += [(f"error {e.code}", f"{e.detail} (row {e.row_id})") for e in ep.format_errors]
    if ep.error:
        rows.append(("error", ep.error))
    cells = "".join(f"<tr><th>{escape(str(k))}</th><td><pre>{escape(_fmt(v))}</pre></td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _worker_card(ep: Episode, row: Row) -> str:
    head = (
        f"worker {escape(row.row_id)} (fork #{row.fork_index}, depth {row.depth}) · {row.generated_tokens} tokens · "
        f"{row.end_s - row.start_s:.2f} s · {escape(row.finish_reason or '')}"
    )
    return (f'<details class="card" id="row-{escape(row.row_id)}" open><summary>{head}</summary>'
            f"<p><b>sub-query</b></p><pre>{escape(row.subquery or '')}</pre>"
            f"<p><b>returned</b></p><pre>{escape(returned_text(row))}</pre>"
            f"<p><b>text</b></p>{row_html(ep, row)}</details>")


def _timeline_img(ep: Episode) -> str:
    from asyncthink.eval.timeline import timeline_figure

    buf = io.BytesIO()
    timeline_figure(ep).savefig(buf, format="png", dpi=100)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="timeline" src="data:image/png;base64,{data}">'


def episode_html(ep: Episode, title: str | None = None, timeline: bool = True) -> str:
    """The whole page."""
    title = title or f"{ep.task or 'episode'} · {ep.mode} · {ep.episode_id}"
    tops = [r for r in ep.rows if r.parent is None]
    workers = [r for r in ep.rows if r.parent is not None]
    body = [f"<h1>{escape(title)}</h1>", _badges(ep), "<h2>Question</h2>", f"<pre>{escape(ep.question)}</pre>"]
    for row in tops:
        role = ep.mode.spec.top_role
        body += [f'<h2 id="row-{escape(row.row_id)}">{role} {escape(row.row_id)} · {row.generated_tokens} tokens</h2>',
                 row_html(ep, row)]
    if workers:
        body += ["<h2>Workers</h2>", *[_worker_card(ep, r) for r in workers]]
    body += ["<h2>Metrics</h2>", _metrics(ep)]
    if timeline and ep.rows:
        body += ["<h2>Timeline</h2>", _timeline_img(ep)]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_episode_html(ep: Episode, path: str | Path, title: str | None = None, timeline: bool = True) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(episode_html(ep, title, timeline), encoding="utf-8")
    return path

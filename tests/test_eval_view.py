"""The episode viewer (terminal and HTML) on a scripted episode: worker returns appear at their join points."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from rich.console import Console
from typer.testing import CliRunner

from asyncthink.cli import app
from asyncthink.display import episode_view, episodes_table
from asyncthink.episode import EpisodeStatus, write_jsonl
from asyncthink.eval.html_view import episode_html
from asyncthink.eval.timeline import event_times, row_order, save_timeline
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.transcript import pieces
from tests.fakes import ScriptedEngine

SCRIPTS = {
    "Q": "plan <FORK-1>add 3 & 5</FORK-1> then <FORK-2>double 7</FORK-2> meanwhile x<y <JOIN-1> after one "
         "<JOIN-2> after two <ANSWER>22</ANSWER>",
    "add 3 & 5": "3 plus 5<RETURN>sum is 8 <b>bold</b></RETURN>",
    "double 7": "seven twice, a long way round to make the organizer wait<RETURN>fourteen</RETURN>",
}


@pytest.fixture(scope="module")
async def episode():
    engine = ScriptedEngine(SCRIPTS, delay_s=0.001)
    ep = await EpisodeExecutor(engine, RuntimeConfig(capacity=3)).run({"question": "Q", "id": "p"}, 0, "p#0")
    assert ep.status == EpisodeStatus.OK and len(ep.rows) == 3
    return ep


def test_pieces_split_the_text_at_forks_and_joins(episode):
    org = episode.organizer
    ps = pieces(episode, org)
    assert "".join(p.raw for p in ps) == org.text  # nothing lost, nothing added
    kinds = [(p.kind, p.index, p.child) for p in ps if p.kind != "text"]
    assert kinds == [("fork", 1, "0.1"), ("fork", 2, "0.2"), ("join", 1, "0.1"), ("join", 2, "0.2")]
    joins = [p for p in ps if p.kind == "join"]
    assert [p.text for p in joins] == ["sum is 8 <b>bold</b>", "fourteen"]
    texts = [p.text for p in ps if p.kind == "text"]
    assert texts[-3:] == [" meanwhile x<y ", " after one ", " after two <ANSWER>22</ANSWER>"]
    assert joins[1].wait_s > joins[0].wait_s  # worker 2 was still running at its join


def test_terminal_view_shows_each_return_at_its_join(episode):
    console = Console(record=True, width=400, color_system=None)
    console.print(episode_view(episode))
    out = console.export_text()
    org_line = next(line for line in out.splitlines() if "plan <FORK-1>" in line)
    order = [org_line.index(s) for s in ("<FORK-1>add 3 & 5</FORK-1>", "meanwhile x<y", "<JOIN-1>", "sum is 8",
                                         "</JOIN-1>", "after one", "<JOIN-2>", "fourteen", "</JOIN-2>", "after two")]
    assert order == sorted(order)
    assert "worker 0.2" in out and "seven twice" in out and "latency" in out


def test_html_page_is_self_contained_escaped_and_ordered(episode):
    page = episode_html(episode)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold</b>" not in page  # model text is escaped
    assert "data:image/png;base64," in page  # the timeline travels inside the page
    body = page[page.index("organizer 0"):page.index("<h2>Workers</h2>")]
    order = [body.index(s) for s in ("add 3 &amp; 5", "meanwhile x&lt;y", "sum is 8", "after one", "fourteen",
                                     "after two")]
    assert order == sorted(order)
    join1 = re.search(r'<span class="join">.*?</span><br>(.*?)</span>', body, re.S)
    assert join1 and join1.group(1) == "sum is 8 &lt;b&gt;bold&lt;/b&gt;"
    _check_balanced(page)


def _check_balanced(page: str) -> None:
    class Checker(HTMLParser):
        void = {"meta", "img", "br"}

        def __init__(self):
            super().__init__()
            self.stack = []

        def handle_starttag(self, tag, attrs):
            if tag not in self.void:
                self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack.pop() == tag, tag

    checker = Checker()
    checker.feed(page)
    assert checker.stack == []


def test_timeline_times_and_figure(episode, tmp_path):
    from asyncthink.metrics import simulate

    tl = simulate(episode)
    times = event_times(episode.organizer, tl)
    forks = [t for ev, t, _ in times if ev.kind == "fork"]
    assert forks == [tl.row_start["0.1"], tl.row_start["0.2"]]  # a worker starts where it was forked
    join2 = [(reached, resume) for ev, reached, resume in times if ev.kind == "join" and ev.index == 2][0]
    assert join2[1] == max(join2[0], tl.row_end["0.2"])
    assert [r.row_id for r in row_order(episode)] == ["0", "0.1", "0.2"]
    path = save_timeline(episode, tmp_path / "t.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_view_command(episode, tmp_path):
    records = tmp_path / "eps.jsonl"
    write_jsonl(records, [episode, episode])
    runner = CliRunner()
    result = runner.invoke(app, ["view", str(records), "--index", "-1", "--html", str(tmp_path / "e.html")])
    assert result.exit_code == 0, result.output
    assert "fourteen" in result.output and (tmp_path / "e.html").read_text().startswith("<!DOCTYPE html>")
    listed = runner.invoke(app, ["view", str(records), "--list"])
    assert listed.exit_code == 0 and "p#0" in listed.output
    bad = runner.invoke(app, ["view", str(records), "--index", "5"])
    assert bad.exit_code != 0 and "holds 2 records" in bad.output
    assert episodes_table([episode]).row_count == 1

"""The main job (``make demo``): the shipped tiny organizer against sequential and parallel thinking.

Evaluates ``models/tiny-organizer`` (trained on this CPU by this repository's
own synth, SFT and RL commands) on held-out countdown problems and, zero-shot,
on Sudoku 4x4, in all three modes on the real vLLM engine; prints the
paper-style table, writes plots and an episode timeline, shows one solved
AsyncThink episode, and says where everything is and what to run next.

    python -m asyncthink.demo [--out runs/demo] [key=value overrides of configs/demo.yaml]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "demo.yaml"

NEXT_STEPS = """[bold]Next[/bold]
  retrain the tiny organizer (about 2 h on 2 CPU cores):  bash scripts/train_tiny_organizer.sh
  look at any episode:                                   asyncthink view {records} --list
  serve it behind an OpenAI API:                         asyncthink serve --model models/tiny-organizer --engine vllm
  a real model on a GPU (see README, 'GPU'):             asyncthink eval --config configs/eval_paper.yaml --out runs/paper \\
                                                           engine.model=<your AsyncThink checkpoint>"""


def main() -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "runs" / "demo"))
    parser.add_argument("overrides", nargs="*", help="key=value overrides of configs/demo.yaml")
    args = parser.parse_args()
    run_demo(Path(args.out), args.overrides)


def run_demo(out: Path, overrides: list[str]) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    from eval.config import load_eval_config
    from eval.harness import evaluate

    console = Console()
    cfg = load_eval_config(CONFIG, [f"engine.model={REPO / 'models' / 'tiny-organizer'}", *overrides])
    console.rule("[bold]asyncthink demo: the tiny organizer vs sequential and parallel thinking")
    console.print(f"model {cfg.engine.model} on {cfg.engine.kind} (CPU); outputs in {out}")
    started = time.perf_counter()
    summary = evaluate(cfg, out, progress=True)
    console.print(Markdown(_paper_table(out / "report.md")))
    _show_solved(console, out)
    console.rule()
    console.print(f"done in {time.perf_counter() - started:.0f} s.  report: {out / 'report.md'}   "
                  f"plots: {out / 'plots'}   episode pages: {out / 'episodes'}")
    for name, path in sorted((summary.get("plots") or {}).items()):
        console.print(f"  {name}: {path}")
    console.print(NEXT_STEPS.format(records=out / "records" / "countdown" / "asyncthink-*.jsonl"))


def _paper_table(report: Path) -> str:
    """The first table of the report (the paper-style one) with its heading."""
    lines, table, seen = report.read_text().splitlines(), [], False
    for line in lines:
        if line.startswith("|"):
            seen = True
            table.append(line)
        elif seen:
            break
    return "\n".join(["**accuracy / critical-path latency (tokens)**", "", *table])


def _show_solved(console, out: Path) -> None:
    """Print one fully correct AsyncThink countdown episode that forked."""
    from transformers import AutoTokenizer

    from asyncthink.display import print_episode
    from asyncthink.episode import read_jsonl

    tokenizer = AutoTokenizer.from_pretrained(REPO / "models" / "tiny-organizer")

    for path in sorted((out / "records" / "countdown").glob("asyncthink-*.jsonl")):
        for ep in read_jsonl(path):
            if ep.score == 1.0 and ep.metrics.get("forks", 0) >= 2:
                console.rule("[bold]one solved AsyncThink episode (worker returns in green, where they joined)")
                print_episode(ep, tokenizer, console=console)
                return
    console.print("[yellow]no fully solved AsyncThink episode with two forks in this run[/yellow]")


if __name__ == "__main__":
    main()

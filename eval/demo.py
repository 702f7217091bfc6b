"""The main job (``asyncthink demo``, ``make demo``): the shipped tiny organizer against sequential and parallel.

Evaluates the shipped ``models/tiny-organizer`` (trained on this CPU by this
repository's own synth, SFT and RL commands) on held-out countdown problems
and, zero-shot, on Sudoku 4x4, in all three modes on the real vLLM engine;
prints the paper-style table, writes plots and an episode timeline, shows one
solved AsyncThink episode, and says where everything is and what to run next.
The shipped checkpoint is RL-trained in every mode it is compared in; the
report also shows each mode's SFT-only row, the checkpoint RL started from,
as ``scripts/ablation.py`` measured it on these same episodes (the
``results.json`` beside the model), with RL minus SFT over the RL seeds.
The model and ``configs/demo.yaml`` ship inside the package, so it runs from
any folder after ``pip install``. The engine's own logs go to ``engine.log``
in the output folder unless ``verbose``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from asyncthink.configs import config_path
from asyncthink.log_capture import capture_engine_logs
from asyncthink.models import shipped_model

# scripts/ and configs/ paths are those of a source checkout; the configs also ship as asyncthink.configs
NEXT_STEPS = """[bold]Next[/bold]
  retrain the tiny organizer (about 2 h on 2 CPU cores):  bash scripts/train_tiny_organizer.sh
  look at any episode:                                   asyncthink view {records} --list
  serve it behind an OpenAI API:                         asyncthink serve --model {model} --engine vllm
  a real model on a GPU (see README, 'GPU'):             asyncthink eval --config configs/eval_paper.yaml \\
                                                           --out runs/paper \\
                                                           engine.model=<your AsyncThink checkpoint>"""


def run_demo(out: Path, overrides: list[str], verbose: bool = False) -> None:
    """Evaluate the shipped organizer into ``out``; ``overrides`` are key=value over configs/demo.yaml."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    with capture_engine_logs(None if verbose else out / "engine.log") as terminal:
        _run(out, overrides, terminal)


def _run(out: Path, overrides: list[str], terminal) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    from asyncthink.eval.config import load_eval_config
    from asyncthink.eval.harness import evaluate

    console = Console(file=terminal)
    cfg = load_eval_config(config_path("demo.yaml"), [f"engine.model={shipped_model()}", *overrides])
    console.rule("[bold]asyncthink demo: the tiny organizer vs sequential and parallel thinking")
    console.print(f"model {cfg.engine.model} on {cfg.engine.kind} (CPU); outputs in {out}")
    started = time.perf_counter()
    summary = evaluate(cfg, out, progress=True)
    console.print(Markdown(_paper_table(out / "report.md")))
    sft = sft_section(shipped_model() / "results.json")
    if sft:
        with open(out / "report.md", "a") as report:
            report.write("\n" + sft)
        console.print(Markdown(sft))
    _show_solved(console, out)
    console.rule()
    console.print(f"done in {time.perf_counter() - started:.0f} s.  report: {out / 'report.md'}   "
                  f"plots: {out / 'plots'}   episode pages: {out / 'episodes'}")
    for name, path in sorted((summary.get("plots") or {}).items()):
        console.print(f"  {name}: {path}")
    console.print(
        NEXT_STEPS.format(model=shipped_model(), records=out / "records" / "countdown" / "asyncthink-*.jsonl")
    )
    if (out / "engine.log").exists():
        console.print(f"  engine logs: {out / 'engine.log'} (show them live with --verbose)")


def sft_section(results_path: Path) -> str:
    """Markdown: each mode's SFT-only row and RL minus SFT (seeds pooled), from a shipped ``results.json``;
    empty when there is none."""
    if not results_path.is_file():
        return ""
    results = json.loads(results_path.read_text())
    lines = ["## Each mode with SFT only", "",
             "The checkpoint RL started from, measured on these same episodes by `scripts/ablation.py` (recorded "
             f"in `{results_path.name}` beside the model, not rerun here); RL minus SFT pairs each problem over "
             "the RL seeds, with a 95 % interval resampling clusters of related problems.", "",
             "| mode | SFT only: accuracy % [95% CI] | latency | RL minus SFT: accuracy (pp) [95% CI] | RL seeds |",
             "|---|---|---|---|---|"]
    for run in (r for r in results["runs"] if r["checkpoint"] == "sft"):
        mode, (lo, hi) = run["mode"], run["accuracy_ci"]
        pooled = [c for c in results["comparisons"] if c["metric"] == "accuracy" and c["a"] == f"{mode} sft"
                  and c["b"] == f"{mode} rl"]
        c = max(pooled, key=lambda c: len(c["seeds"]), default=None)
        diff = "" if c is None else (f"{100 * c['diff']:+.1f} [{100 * c['ci'][0]:+.1f}, {100 * c['ci'][1]:+.1f}]"
                                     + ("" if c["significant"] else ", n.s."))
        seeds = "" if c is None else ", ".join(map(str, c["seeds"]))
        lines.append(f"| {mode} | {100 * run['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | "
                     f"{run['latency']:.0f} | {diff} | {seeds} |")
    return "\n".join(lines) + "\n"


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
    from asyncthink.display import print_episode
    from asyncthink.episode import read_jsonl

    for path in sorted((out / "records" / "countdown").glob("asyncthink-*.jsonl")):
        for ep in read_jsonl(path):
            if ep.score == 1.0 and ep.metrics.get("forks", 0) >= 2:
                console.rule("[bold]one solved AsyncThink episode (worker returns in green, where they joined)")
                print_episode(ep, console=console)
                return
    console.print("[yellow]no fully solved AsyncThink episode with two forks in this run[/yellow]")

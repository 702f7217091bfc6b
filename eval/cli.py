"""``asyncthink eval`` (run an evaluation), ``compare`` (paired differences), ``view`` (one episode), ``demo``."""

from __future__ import annotations

from pathlib import Path

import typer


def eval_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. samples=4 runtime.temperature=0.6"),
    config: Path = typer.Option(..., "--config", "-c", exists=True, dir_okay=False, help="Eval config (YAML)."),
    out: Path = typer.Option(..., "--out", "-o", help="Results directory; rerunning into it resumes."),
    report_only: bool = typer.Option(False, "--report-only", help="Run nothing; rebuild summary, report, plots."),
    force: bool = typer.Option(False, "--force", help="Resume even if the directory was made with other settings."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Run tasks x modes x budgets on one model; write records, summary.json, report.md and plots."""
    from asyncthink.eval.config import load_eval_config
    from asyncthink.eval.harness import evaluate
    from asyncthink.eval.report import paper_table

    try:
        cfg = load_eval_config(config, overrides or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--config / overrides") from exc
    summary = evaluate(cfg, out, progress=progress, report_only=report_only, force=force)
    typer.echo("\n".join(paper_table(summary["results"])))
    typer.echo(f"\n{summary['meta']['new_episodes']} new episodes; report: {out / 'report.md'}, "
               f"summary: {out / 'summary.json'}")


def view_command(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Episode records (JSONL)."),
    index: int = typer.Option(0, "--index", "-n", help="Which record (0 = first, -1 = last)."),
    episode_id: str = typer.Option(None, "--id", help="Pick the record with this episode id instead."),
    html: Path = typer.Option(None, "--html", help="Also write the episode as a self-contained HTML page here."),
    list_records: bool = typer.Option(False, "--list", help="List the file's records instead."),
) -> None:
    """Show an episode: organizer text with worker sub-queries and returns at their join points, and metrics."""
    from rich.console import Console

    from asyncthink.display import episodes_table, print_episode
    from asyncthink.episode import read_jsonl

    try:
        episodes = list(read_jsonl(file))
    except ValueError as exc:  # a torn or foreign line: say where, without a traceback
        raise typer.BadParameter(str(exc), param_hint="FILE") from exc
    if not episodes:
        raise typer.BadParameter(f"{file} holds no episode records", param_hint="FILE")
    console = Console()
    if list_records:
        console.print(episodes_table(episodes))
        return
    ep = _pick(episodes, index, episode_id, file)
    print_episode(ep, console)
    if html is not None:
        from asyncthink.eval.html_view import write_episode_html

        typer.echo(f"episode page written to {write_episode_html(ep, html)}")


def _pick(episodes: list, index: int, episode_id: str | None, file: Path):
    if episode_id is not None:
        for ep in episodes:
            if ep.episode_id == episode_id:
                return ep
        raise typer.BadParameter(f"no episode {episode_id!r} in {file}", param_hint="--id")
    if not -len(episodes) <= index < len(episodes):
        raise typer.BadParameter(f"{file} holds {len(episodes)} records; index {index} is out of range",
                                 param_hint="--index")
    return episodes[index]


def demo_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides of configs/demo.yaml, e.g. samples=2"),
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="Results directory; rerunning into it resumes."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show the engine's logs instead of writing them "
                                 "to engine.log in the results directory."),
) -> None:
    """The main job: the shipped tiny organizer in all three modes on vLLM (CPU), with table, plots, timeline."""
    from asyncthink.eval.demo import run_demo

    run_demo(out, overrides or [], verbose=verbose)


def compare_command(
    a: Path = typer.Argument(..., exists=True, file_okay=False, help="Evaluation folder A (e.g. the SFT model's)."),
    b: Path = typer.Argument(..., exists=True, file_okay=False, help="Evaluation folder B (e.g. after RL)."),
    metric: list[str] = typer.Option(["accuracy", "latency", "eta_over_capacity"], "--metric", "-m",
                                     help="Figures to compare (repeatable)."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the table (markdown) here."),
    bootstrap: int = typer.Option(2000, help="Bootstrap resamples."),
) -> None:
    """Paired differences B - A between two evaluations of the same problems, with bootstrap intervals."""
    from asyncthink.eval.compare import compare_runs, comparison_table

    try:
        rows = comparison_table(compare_runs(a, b, metric, n_boot=bootstrap))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo("\n".join(rows))
    if out is not None:
        out.write_text(f"# {b} - {a}\n\n" + "\n".join(rows) + "\n", encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("compare")(compare_command)
    app.command("view")(view_command)
    app.command("demo")(demo_command)

"""The ``asyncthink`` command line: one Typer app; each role registers its subcommands."""

from __future__ import annotations

import typer

from asyncthink import __version__

app = typer.Typer(
    name="asyncthink",
    help="Asynchronous organizer-worker reasoning: run, evaluate, serve and train AsyncThink policies.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"asyncthink {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Asynchronous organizer-worker reasoning with language models."""


@app.command("tiny-model")
def tiny_model(
    out: str = typer.Option(..., help="Folder to write the model and tokenizer to."),
    seed: int = typer.Option(0, help="Seed for the weights and the tokenizer corpus."),
    size: str = typer.Option("tiny", help="tiny | mini | small | base"),
    max_index: int = typer.Option(8, help="Fork indices that get their own tag tokens."),
    corpus: str = typer.Option(None, help="Text file (one document a line) to train the tokenizer on."),
) -> None:
    """Write a tiny random Llama and tokenizer (protocol tags as tokens, chat template, no downloads)."""
    from pathlib import Path

    from asyncthink.tiny_model import build_tiny_model

    lines = Path(corpus).read_text().splitlines() if corpus else None
    path = build_tiny_model(out, seed=seed, size=size, max_index=max_index, corpus=lines)
    typer.echo(f"tiny model written to {path}")


# Each role's CLI module exposes ``register(app)``; they never import this module, so there is no cycle.
ROLE_COMMANDS = ("asyncthink.solve_cli", "asyncthink.serve.cli", "asyncthink.training.cli", "asyncthink.eval.cli",
                 "asyncthink.models.cli")


def _register_commands() -> None:
    import importlib

    for module in ROLE_COMMANDS:
        importlib.import_module(module).register(app)


_register_commands()


def run() -> None:
    """The ``asyncthink`` command: the app, with a misconfigured upstream server reported without a traceback."""
    from asyncthink.engines.upstream import UpstreamConfigError

    try:
        app()
    except UpstreamConfigError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from None

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

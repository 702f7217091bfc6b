"""What an evaluation runs: tasks x modes x organizer-token budgets on one model and engine.

``load_eval_config("configs/eval_tiny.yaml", ["samples=2"])`` builds an
``EvalConfig`` from YAML and ``key=value`` overrides (``asyncthink.config_io``).
Every mode shares ``runtime`` (sampling, capacity, worker budget, prompts);
each budget only replaces ``runtime.max_organizer_tokens`` (per trace in
parallel mode), so the baselines run under the same budget as AsyncThink.
Budgets are token counts or ``"2K"``-style strings (K = 1024).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncthink.config_io import build_nested, from_dict, load_config, require
from asyncthink.engines import EngineConfig, EngineKind
from asyncthink.runtime_config import Mode, RuntimeConfig

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kK]?)\s*$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_budget(value: int | str) -> int:
    """``2048``, ``"2048"``, ``"2K"`` or ``"1.5k"`` -> tokens."""
    if isinstance(value, bool):
        raise ValueError(f"budget must be a token count or like '2K', got {value!r}")
    if isinstance(value, int):
        tokens = value
    else:
        m = _BUDGET.match(str(value))
        if not m:
            raise ValueError(f"budget must be a token count or like '2K', got {value!r}")
        tokens = round(float(m.group(1)) * (1024 if m.group(2) else 1))
    if tokens < 1:
        raise ValueError(f"budget must be >= 1 token, got {value!r}")
    return tokens


def budget_label(tokens: int) -> str:
    """2048 -> "2K" (the paper's notation); other counts as they are."""
    return f"{tokens // 1024}K" if tokens % 1024 == 0 else str(tokens)


@dataclass
class TaskSpec:
    """One task of the evaluation and the problems drawn from it."""

    name: str
    """Task factory name: ``countdown``, ``math`` or ``sudoku`` (``envs.make_task``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Options of the task factory, e.g. ``{dataset: aime24}`` for math or ``{size: 4}`` for sudoku."""
    label: str | None = None
    """Name in file paths, tables and plots (``AIME-24``); default: the name, plus the math dataset."""
    split: str = "test"
    """Dataset split (math also takes a source name such as ``amc23``)."""
    n: int | None = None
    """Problems to evaluate (the first ``n``); ``None`` = the task's default (all of a math file)."""
    seed: int = 0
    """Seed of the generated problem set (countdown, sudoku); independent of the sampling seed."""
    samples: int | None = None
    """Episodes per problem for this task; ``None`` = ``EvalConfig.samples``."""
    budgets: list[int | str] | None = None
    """Organizer-token budgets for this task; ``None`` = ``EvalConfig.budgets``."""

    def __post_init__(self) -> None:
        require(
            (isinstance(self.options, dict), f"task {self.name!r}: options must be a mapping, got {self.options!r}"),
        )
        if self.label is None:
            dataset = self.options.get("dataset") if self.name == "math" else None
            if isinstance(dataset, dict):  # a bring-your-own dataset: its name, else its path's last part
                from asyncthink.envs.math_data import MathDataSpec

                dataset = re.sub(r"[^A-Za-z0-9._-]", "_", MathDataSpec(**dataset).label)
            self.label = f"{self.name}-{dataset}" if dataset else self.name
        require(
            (_LABEL.match(self.label), f"task label must be letters, digits, '.', '_' or '-', got {self.label!r}"),
            (not (self.n is not None and self.n < 1), f"task {self.label!r}: n must be >= 1 or null, got {self.n!r}"),
            (
                not (self.samples is not None and self.samples < 1),
                f"task {self.label!r}: samples must be >= 1, got {self.samples!r}",
            ),
        )
        if self.budgets is not None:
            self.budgets = _budgets(self.budgets, f"task {self.label!r}")


@dataclass
class EvalConfig:
    """An evaluation: tasks x modes x budgets on one model, with the same sampling and seeds per mode."""

    engine: EngineConfig | None = None
    """The engine and model (``asyncthink.engines.EngineConfig``); may be ``None`` only when the caller
    passes an engine it built (``run_eval(..., engine=...)``)."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """Sampling, capacity, worker budget, parallel traces and prompts, shared by every mode;
    ``runtime.mode`` is ignored (``modes`` decides) and so is ``max_organizer_tokens`` when budgets are set."""
    tasks: list[TaskSpec] = field(default_factory=list)
    """The tasks, each with its problems (``{name, options, label, split, n, seed, samples, budgets}``)."""
    modes: list[Mode] = field(default_factory=lambda: [Mode.SEQUENTIAL, Mode.PARALLEL, Mode.ASYNCTHINK])
    """Modes to compare: ``sequential``, ``parallel`` and/or ``asyncthink``."""
    budgets: list[int | str] | None = None
    """Organizer-token budgets to sweep (``[1K, 2K]``); ``None`` = ``[runtime.max_organizer_tokens]``."""
    samples: int = 1
    """Episodes per problem (each with its own seed, the same in every mode and budget)."""
    seed: int = 0
    """Sampling seed; with the problem index and sample number it fixes each episode's seed."""
    max_in_flight: int = 32
    """Episodes running at once (one task, mode and budget at a time); with ``processes``, each process runs up
    to ``max_in_flight / processes`` of them, rounded up."""
    processes: int = 1
    """Processes that share each run's episodes, each with its own event loop and client of the engine
    (``asyncthink.shards``): for thousands of streams, whose client work needs more than one core. Above 1 it
    needs engine kind ``openai``, since an in-process engine cannot be shared across processes."""
    max_problems: int | None = None
    """Cap on problems per task, over each task's ``n`` (quick runs: ``max_problems=5``)."""
    retry_errors: bool = True
    """On a rerun, run again the episodes that ended with status ``error`` (engine failures)."""
    bootstrap: int = 1000
    """Bootstrap resamples for the confidence intervals (resampling problems, all samples of each)."""
    ci: float = 0.95
    """Confidence level of the intervals."""
    plots: bool = True
    """Write the PNG plots and the showcase episode pages."""
    title: str = "AsyncThink evaluation"
    """Heading of ``report.md``."""
    data: dict[str, Any] = field(default_factory=dict)
    """Written by the run into its resolved config, not read: each task's problems (by label) with their size,
    source(s) and SHA-256 (``envs.manifest.dataset_manifest``), so a result says what it was evaluated on."""

    def __post_init__(self) -> None:
        build_nested(self)
        self.tasks = [_task(t, k) for k, t in enumerate(self.tasks or [])]
        self.modes = [_mode(m) for m in self.modes]
        if self.budgets is not None:
            self.budgets = _budgets(self.budgets, "budgets")
        self._check()

    def _check(self) -> None:
        labels = [t.label for t in self.tasks]
        require(
            (bool(self.tasks), "tasks must list at least one task, got none"),
            (len(set(labels)) == len(labels), f"task labels must be unique, got {labels}"),
            (bool(self.modes), "modes must list at least one mode, got none"),
            (len(set(self.modes)) == len(self.modes), f"modes must not repeat, got {[str(m) for m in self.modes]}"),
            (self.samples >= 1, f"samples must be >= 1, got {self.samples!r}"),
            (self.max_in_flight >= 1, f"max_in_flight must be >= 1, got {self.max_in_flight!r}"),
            (
                isinstance(self.processes, int) and not isinstance(self.processes, bool) and self.processes >= 1,
                f"processes must be an integer >= 1, got {self.processes!r}",
            ),
            (
                self.processes == 1 or self.engine is None or self.engine.kind == EngineKind.OPENAI,
                f"processes={self.processes!r} needs engine kind 'openai' (each process a client of one server), "
                f"got {str(self.engine.kind) if self.engine else None!r}",
            ),
            (
                self.max_problems is None or self.max_problems >= 1,
                f"max_problems must be >= 1, got {self.max_problems!r}",
            ),
            (self.bootstrap >= 1, f"bootstrap must be >= 1, got {self.bootstrap!r}"),
            (0 < self.ci < 1, f"ci must be in (0, 1), got {self.ci!r}"),
            (
                self.runtime.capacity >= 2 or not any(m.spec.forks for m in self.modes),
                f"runtime.capacity must be >= 2 for asyncthink, got {self.runtime.capacity!r}",
            ),
        )

    def task_budgets(self, spec: TaskSpec) -> list[int]:
        budgets = spec.budgets if spec.budgets is not None else self.budgets
        return list(budgets) if budgets else [self.runtime.max_organizer_tokens]

    def task_samples(self, spec: TaskSpec) -> int:
        return spec.samples if spec.samples is not None else self.samples

    def task_n(self, spec: TaskSpec) -> int | None:
        if self.max_problems is None:
            return spec.n
        return self.max_problems if spec.n is None else min(spec.n, self.max_problems)

    def runtime_for(self, mode: Mode, budget: int) -> RuntimeConfig:
        """The shared runtime with one mode and one organizer budget."""
        return dataclasses.replace(self.runtime, mode=mode, max_organizer_tokens=budget)


def _task(value: Any, k: int) -> TaskSpec:
    if isinstance(value, TaskSpec):
        return value
    if isinstance(value, str):
        value = {"name": value}
    return from_dict(TaskSpec, value, f"tasks[{k}].")


def _mode(value: Any) -> Mode:
    try:
        return Mode(value)
    except ValueError:
        raise ValueError(f"mode must be one of {[str(m) for m in Mode]}, got {value!r}") from None


def _budgets(values: Any, where: str) -> list[int]:
    if not isinstance(values, list | tuple) or not values:
        raise ValueError(f"{where} must be a non-empty list of token budgets, got {values!r}")
    budgets = [parse_budget(v) for v in values]
    if len(set(budgets)) != len(budgets):
        raise ValueError(f"{where} must not repeat, got {values!r}")
    return budgets


def public_config(cfg: EvalConfig) -> EvalConfig:
    """``cfg`` as it may be written to disk: without the engine's API key."""
    if cfg.engine is None or cfg.engine.api_key is None:
        return cfg
    return dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, api_key="<redacted>"))


def load_eval_config(path: str | Path | None = None, overrides: list[str] | None = None) -> EvalConfig:
    """An ``EvalConfig`` from YAML and ``key=value`` overrides."""
    return load_config(EvalConfig, path, overrides)

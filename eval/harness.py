"""Run an evaluation into a directory, resumably, and write its summary, report and plots.

Every (task, budget, mode) runs the same items: ``make_items`` with the same
seed, so problem x sample seeds line up across modes and budgets. Runs go one
at a time (so wall-clock figures of one mode are not slowed by another), each
with up to ``max_in_flight`` episodes in flight on the one engine, after one
warm-up request. With ``processes`` above 1 a run's episodes are shared by that
many child processes (``asyncthink.shards``), each an OpenAI-compatible client
of the same server, so the client work of thousands of streams gets more than
one core; records still come home, and are appended, one by one.

Resuming: each finished episode is appended to its run's JSONL the moment it
ends; a rerun into the same directory loads those records and runs only the
missing episode ids (and, with ``retry_errors``, those that ended in an
engine error). When nothing is missing the engine is not even started. A
rerun whose model, runtime settings or seed differ from the directory's
``config.yaml`` is refused (``force`` overrides), since mixing records from
two settings would make the figures meaningless. Summary, report and plots
are always rebuilt from the records of the planned episodes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from asyncthink import envs
from asyncthink.batch import BatchItem, make_items, run_batch
from asyncthink.config_io import save_config, to_dict
from asyncthink.engines import Engine, GenerateRequest, SamplingParams, build_engine
from asyncthink.engines.base import generate_all
from asyncthink.envs import Task
from asyncthink.envs.manifest import dataset_manifest
from asyncthink.episode import Episode, EpisodeStatus
from asyncthink.eval.config import EvalConfig, public_config
from asyncthink.eval.progress import EvalProgress
from asyncthink.eval.store import RecordStore, RunKey
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.shards import ShardSpec, run_sharded

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One (task, budget, mode) cell with the episodes it must hold."""

    key: RunKey
    task: Task
    runtime: RuntimeConfig
    items: list[BatchItem]
    task_factory: Callable[[], Task]
    """Builds ``task`` anew (picklable: child processes build their own)."""


def plan(cfg: EvalConfig) -> list[Run]:
    """Every run of the grid, tasks in config order, then budgets, then modes."""
    runs = []
    for spec in cfg.tasks:
        task_factory = functools.partial(envs.task_factory(spec.name), **spec.options)
        task = task_factory()
        problems = task.dataset(spec.split, cfg.task_n(spec), spec.seed)
        items = make_items(problems, cfg.task_samples(spec), cfg.seed)
        for budget in cfg.task_budgets(spec):
            for mode in cfg.modes:
                key = RunKey(spec.label, budget, str(mode))
                runs.append(Run(key, task, cfg.runtime_for(mode, budget), items, task_factory))
    return runs


def data_manifests(cfg: EvalConfig, runs: list[Run]) -> dict[str, Any]:
    """Size, source(s) and hash of each task's problems, by task label (for the resolved config)."""
    out = {}
    for spec in cfg.tasks:
        items = next(run.items for run in runs if run.key.task == spec.label)
        problems = list({str(item.problem["id"]): item.problem for item in items}.values())
        out[spec.label] = dataset_manifest(spec.name, spec.options, spec.split, problems)
    return out


def _todo(run: Run, done: dict[str, Episode], retry_errors: bool) -> list[BatchItem]:
    def finished(item: BatchItem) -> bool:
        ep = done.get(item.episode_id)
        return ep is not None and not (retry_errors and ep.status == EpisodeStatus.ERROR)

    return [item for item in run.items if not finished(item)]


# -- guarding a directory against mixed settings


def fingerprint(cfg: dict[str, Any]) -> dict[str, Any]:
    """The settings every record in a directory must share (from a config as plain data). Tasks are keyed by
    label: the problems behind a label (task, options, split, seed) must not change; adding tasks is fine."""
    runtime = {k: v for k, v in (cfg.get("runtime") or {}).items() if k not in ("mode", "max_organizer_tokens")}
    engine = cfg.get("engine") or {}
    tasks = {
        t.get("label"): {k: t.get(k) for k in ("name", "options", "split", "seed")} for t in cfg.get("tasks") or []
    }
    data = {label: d.get("sha256") for label, d in (cfg.get("data") or {}).items()}  # the problems themselves
    return {"engine.model": engine.get("model"), "runtime": runtime, "seed": cfg.get("seed"), "tasks": tasks,
            "data": data}


def check_directory(out: Path, cfg: EvalConfig, force: bool = False) -> None:
    path = out / "config.yaml"
    if not path.exists():
        return
    before, now = fingerprint(yaml.safe_load(path.read_text()) or {}), fingerprint(to_dict(cfg))
    for part in ("tasks", "data"):  # only labels both share; a directory saved before data hashes has none
        common = set(before[part]) & set(now[part])
        before[part] = {k: v for k, v in before[part].items() if k in common}
        now[part] = {k: v for k, v in now[part].items() if k in common}
    diffs = _diff(before, now)
    if diffs and not force:
        raise ValueError(f"{out} holds records made with other settings ({'; '.join(diffs)}); use a new output "
                         f"directory, or force=True (--force) to resume anyway")


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{where}{k}.")]
    return [] if a == b else [f"{where.rstrip('.')}: {a!r} -> {b!r}"]


# -- running


async def run_eval(
    cfg: EvalConfig,
    out_dir: str | Path,
    engine: Engine | None = None,
    progress: bool = True,
    report_only: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Run what is missing of ``cfg`` into ``out_dir`` and return the summary.

    ``engine``: an engine already built (it stays open); else one is built from
    ``cfg.engine`` when there is work to do, and closed at the end. With
    ``cfg.processes`` above 1, pass none: each child builds its own client from ``cfg.engine``.
    ``report_only``: run nothing, rebuild summary, report and plots from the records.
    """
    if not report_only:
        _check_processes(cfg, engine)
    out, started = Path(out_dir), time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    runs = plan(cfg)
    cfg = dataclasses.replace(cfg, data=data_manifests(cfg, runs))  # the caller's config is left as it was
    check_directory(out, cfg, force)  # a dataset file edited since the records were made is refused too
    store = RecordStore(out)
    save_config(public_config(cfg), out / "config.yaml")
    done = {run.key: store.load(run.key) for run in runs}
    todo = {} if report_only else {run.key: _todo(run, done[run.key], cfg.retry_errors) for run in runs}
    new = sum(len(items) for items in todo.values())
    if new:
        await _run_all(cfg, runs, todo, done, store, engine, progress)
    from asyncthink.eval.outputs import write_outputs  # matplotlib loads only when outputs are written

    return write_outputs(cfg, out, runs, done, _meta(cfg, engine, new, time.perf_counter() - started))


async def _run_all(cfg: EvalConfig, runs: list[Run], todo: dict[RunKey, list[BatchItem]],
                   done: dict[RunKey, dict[str, Episode]], store: RecordStore, engine: Engine | None,
                   progress: bool) -> None:
    owned = engine is None
    if owned:
        if cfg.engine is None:
            raise ValueError("no engine: set `engine` in the config or pass a built engine to run_eval")
        engine = await build_engine(cfg.engine)
    total = sum(len(run.items) for run in runs)
    finished = total - sum(len(items) for items in todo.values())
    try:
        await warm_up(engine)
        with EvalProgress(total, finished, progress) as bars:
            for run in runs:
                if todo[run.key]:
                    await _run_one(cfg, run, todo[run.key], done[run.key], store, engine, bars)
    finally:
        if owned:
            await engine.close()


async def warm_up(engine: Engine) -> None:
    """One short request first: the engine's first requests are slow (CUDA graphs, caches, thread pools), and
    that cost would otherwise land on the wall-clock figures of whichever mode happens to run first."""
    ids = list(engine.tokenizer.encode("warm up", add_special_tokens=False))
    try:
        await generate_all(engine, GenerateRequest(ids, SamplingParams(max_tokens=4, temperature=0),
                                                    f"eval-warm-up-{time.monotonic_ns()}"))
    except Exception as exc:  # a failing engine shows up in the episodes; the warm-up is only a courtesy
        log.warning("engine warm-up failed: %r", exc)


async def _run_one(cfg: EvalConfig, run: Run, items: list[BatchItem], done: dict[str, Episode], store: RecordStore,
                   engine: Engine, bars: EvalProgress) -> None:
    todo_ids = {item.episode_id for item in items}
    earlier = [done[i.episode_id] for i in run.items if i.episode_id in done and i.episode_id not in todo_ids]
    bar = bars.start_run(run.key.name, len(run.items), earlier)

    def on_episode(ep: Episode) -> None:
        store.append(run.key, ep)  # first, so a crash right after loses nothing
        done[ep.episode_id] = ep
        bars.finished(bar, ep)

    retried = any(item.episode_id in done for item in items)
    if cfg.processes > 1:
        await run_sharded(shard_spec(cfg, run), items, cfg.processes, on_episode=on_episode)
    else:
        executor = EpisodeExecutor(engine, run.runtime, run.task)
        await run_batch(executor, items, cfg.max_in_flight, progress=False, on_episode=on_episode)
    if retried:  # the failed attempts are still in the file, before their retries
        store.rewrite(run.key, list(done.values()))


def _check_processes(cfg: EvalConfig, engine: Engine | None) -> None:
    """Child processes build their own clients from ``cfg.engine``: an engine the caller built cannot be handed
    to them, and would only be warmed up while the episodes went elsewhere."""
    if cfg.processes > 1 and cfg.engine is None:
        raise ValueError(f"processes={cfg.processes} needs `engine` in the config: each child process builds its "
                         "own client of it")
    if cfg.processes > 1 and engine is not None:
        raise ValueError(f"processes={cfg.processes} builds a client per process from `engine` in the config; "
                         "pass no engine to run_eval")


def shard_spec(cfg: EvalConfig, run: Run) -> ShardSpec:
    """What each child needs for its share of ``run``: its own client of the configured engine, the run's
    settings and task, and its part of ``max_in_flight`` (rounded up)."""
    return ShardSpec(functools.partial(build_engine, cfg.engine), run.runtime, run.task_factory,
                     max_in_flight=-(-cfg.max_in_flight // cfg.processes))


def _meta(cfg: EvalConfig, engine: Engine | None, new: int, elapsed: float) -> dict[str, Any]:
    model = cfg.engine.model if cfg.engine else None
    kind = str(cfg.engine.kind) if cfg.engine else getattr(engine, "kind", "?")
    return {"model": model or kind, "engine": kind, "written": datetime.datetime.now().isoformat(timespec="seconds"),
            "commit": _commit(), "new_episodes": new, "elapsed_s": round(elapsed, 2)}


def _commit() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return sha.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def evaluate(cfg: EvalConfig, out_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """``run_eval`` from synchronous code (the CLI)."""
    return asyncio.run(run_eval(cfg, out_dir, **kwargs))

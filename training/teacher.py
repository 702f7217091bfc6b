"""Teacher mode: a strong model rewrites a math problem and its reference solution as an AsyncThink trace.

Any OpenAI-compatible model, reached through the HTTP engine (or any engine),
is asked for an organizer trace and one block per worker:

    <ORGANIZER> ... <FORK-1>sub-query</FORK-1> ... <JOIN-1>worker 1's result</JOIN-1> ...
    <ANSWER>\\boxed{...}</ANSWER> </ORGANIZER>
    <WORKER-1> reasoning ... <RETURN>worker 1's result</RETURN> </WORKER-1>

A trace is kept only if it parses, each join's text equals that worker's
return, the runtime replays it without a format error, and the task scores
its answer 1. The yield (kept / asked) is reported with the reasons for
every rejection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from asyncthink.config_io import require
from asyncthink.engines import EngineConfig
from asyncthink.engines.base import Engine, generate_all
from asyncthink.engines.types import GenerateRequest, SamplingParams
from asyncthink.episode import Episode, EpisodeStatus
from asyncthink.prompts import render
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.training.replay import replay_episode

TEACHER_SYSTEM = """You write training data for a model that reasons as an organizer with parallel workers.
Rewrite the reference solution of the problem as an organizer trace and worker traces, in exactly this form:
<ORGANIZER>
the organizer's reasoning. When a part of the work is independent, it forks a worker with
<FORK-i>a self-contained sub-query</FORK-i> (i = 1, 2, ...; at most {workers} forked and not yet joined)
and keeps reasoning. Where it needs worker i's result it writes <JOIN-i>, then exactly the text worker i
returns, then </JOIN-i>. It joins every worker. It ends with <ANSWER>\\boxed{{final answer}}</ANSWER>.
</ORGANIZER>
<WORKER-1>
worker 1's reasoning about its sub-query only, ending with <RETURN>its short result</RETURN>
</WORKER-1>
(one WORKER block per fork). Use the reference solution's mathematics; do not add other text."""

_BLOCK = re.compile(r"<(ORGANIZER|WORKER-(\d+))>(.*?)</\1>", re.S)
_FORK = re.compile(r"<FORK-(\d+)>(.*?)</FORK-\1>", re.S)
_JOIN = re.compile(r"(<JOIN-(\d+)>)(.*?)</JOIN-\2>", re.S)
_RETURN = re.compile(r"<RETURN>(.*?)</RETURN>", re.S)


@dataclass
class ParsedTrace:
    organizer: str  # generated text only: each join's returned text and close tag removed
    workers: dict[str, str]  # sub-query -> worker text


def parse_teacher_output(text: str) -> ParsedTrace | str:
    """The trace in ``text``, or the reason it is unusable."""
    blocks = {m.group(1): m.group(3).strip() for m in _BLOCK.finditer(text)}
    organizer = blocks.get("ORGANIZER")
    if organizer is None:
        return "no_organizer_block"
    forks = {int(i): q for i, q in _FORK.findall(organizer)}
    workers: dict[str, str] = {}
    for index, query in forks.items():
        body = blocks.get(f"WORKER-{index}")
        returned = _RETURN.findall(body or "")
        if not returned:
            return f"worker_{index}_missing_or_no_return"
        joined = [m.group(3) for m in _JOIN.finditer(organizer) if int(m.group(2)) == index]
        if not joined or joined[0].strip() != returned[-1].strip():
            return f"join_{index}_differs_from_return"
        workers[query] = body
    return ParsedTrace(_JOIN.sub(r"\1", organizer), workers)


def teacher_messages(problem: dict[str, Any], capacity: int) -> list[dict[str, str]]:
    user = f"Problem:\n{problem['question']}\n\nReference solution:\n{problem.get('solution') or problem['gold']}"
    return [{"role": "system", "content": TEACHER_SYSTEM.format(workers=capacity - 1)},
            {"role": "user", "content": user}]


async def teach_one(teacher: Engine, student_tokenizer: Any, runtime: RuntimeConfig, task: Any,
                    problem: dict[str, Any], sampling: SamplingParams, episode_id: str) -> Episode | str:
    """One teacher call; the replayed episode, or why it was rejected."""
    prompt = render(teacher.tokenizer, teacher_messages(problem, runtime.capacity))
    ids, _, _ = await generate_all(teacher, GenerateRequest(prompt, sampling, f"teach-{episode_id}"))
    parsed = parse_teacher_output(teacher.tokenizer.decode(ids, skip_special_tokens=True))
    if isinstance(parsed, str):
        return parsed
    ep = await replay_episode(student_tokenizer, runtime, problem, parsed.organizer, parsed.workers, task, episode_id)
    if ep.status != EpisodeStatus.OK:
        return ep.error_codes[0] if ep.error_codes else str(ep.status)
    return ep if ep.score == 1.0 else "wrong_answer"


@dataclass
class TeacherRunConfig:
    """Teacher-mode synthesis for math."""

    engine: EngineConfig = field(default_factory=lambda: EngineConfig(kind="openai", base_urls=["http://127.0.0.1:8000"]))
    """The teacher: usually an OpenAI-compatible server (``kind: openai``)."""
    tokenizer: str = ""
    """Student model folder whose tokenizer builds the rows."""
    task_options: dict[str, Any] = field(default_factory=lambda: {"dataset": "aime_1983_2023_train"})
    """Options of ``make_task("math", ...)``: which file the problems come from."""
    split: str = "train"
    """Split of that dataset."""
    problems: int = 100
    """Problems to send to the teacher."""
    max_tokens: int = 4096
    """Teacher completion budget."""
    temperature: float = 0.6
    """Teacher sampling temperature."""
    concurrency: int = 16
    """Teacher requests in flight."""
    seed: int = 0
    """Problem order and sampling seed."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """Capacity and prompt style of the student traces."""
    out: str = "runs/teacher"
    """Output folder (same layout as ``train synth``)."""

    def __post_init__(self) -> None:
        require(
            (self.tokenizer, "teacher mode needs the student's tokenizer folder, got ''"),
            (
                not (self.problems < 1 or self.concurrency < 1),
                f"problems and concurrency must be >= 1, got {self.problems}, {self.concurrency}",
            ),
        )


async def run_teacher(cfg: TeacherRunConfig, teacher: Engine | None = None) -> dict[str, Any]:
    """Ask the teacher for every problem; write records, dataset and stats (with the yield)."""
    import asyncio
    import collections
    import json
    from dataclasses import replace
    from pathlib import Path

    from transformers import AutoTokenizer

    from asyncthink.config_io import save_config
    from asyncthink.engines import build_engine
    from asyncthink.envs import make_task
    from asyncthink.envs.manifest import dataset_manifest
    from asyncthink.episode import write_jsonl
    from asyncthink.training.model_prep import tokenizer_digest
    from asyncthink.training.sft_data import sft_dataset

    out = Path(cfg.out)
    save_config(cfg, out / "config.yaml")
    task, student = make_task("math", **cfg.task_options), AutoTokenizer.from_pretrained(cfg.tokenizer)
    runtime = replace(cfg.runtime, max_organizer_tokens=10**6, max_worker_tokens=10**6, max_forks=10**6)
    problems = task.dataset(cfg.split, n=cfg.problems, seed=cfg.seed)
    owned = teacher is None
    teacher = teacher or await build_engine(cfg.engine)
    limit, reasons, kept = asyncio.Semaphore(cfg.concurrency), collections.Counter(), []

    async def one(k: int, problem: dict[str, Any]) -> None:
        sampling = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed + k)
        async with limit:
            try:
                result = await teach_one(teacher, student, runtime, task, problem, sampling, str(problem["id"]))
            except Exception as exc:  # one failed call is a rejection, not the end of the run
                result = f"error:{type(exc).__name__}"
        if isinstance(result, str):
            reasons[result] += 1
        else:
            kept.append(result)

    try:
        await asyncio.gather(*(one(k, p) for k, p in enumerate(problems)))
    finally:
        if owned:
            await teacher.close()
    stats = {"problems": len(problems), "kept": len(kept), "yield": len(kept) / max(1, len(problems)),
             "rejected": dict(reasons), "tokenizer_digest": tokenizer_digest(student),
             "data": dataset_manifest("math", cfg.task_options, cfg.split, problems)}  # what it was made from
    write_jsonl(out / "asyncthink.jsonl", kept)
    if kept:
        sft_dataset(kept).save_to_disk(str(out / "dataset"))
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats

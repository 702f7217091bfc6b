"""The evaluation harness on a scripted engine: grid, records, figures, resuming, guarded directories, processes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from asyncthink.cli import app
from asyncthink.envs import make_task
from asyncthink.envs.math_data import load_spec
from asyncthink.episode import EpisodeStatus, read_jsonl
from asyncthink.eval import harness
from asyncthink.eval.config import load_eval_config
from asyncthink.eval.harness import run_eval
from tests.fakes import ScriptedEngine

N_PROBLEMS = 2


class ModeScripts(ScriptedEngine):
    """Organizer rows follow ``scripts``; sequential and parallel traces follow ``sequential``."""

    def __init__(self, scripts: dict[str, str], sequential: dict[str, str]) -> None:
        super().__init__(scripts)
        self.sequential = sequential

    def _segment(self, request):
        if self.tokenizer.decode(request.prompt_ids).startswith("System: sequential"):
            scripts, self.scripts = self.scripts, self.sequential
            try:
                return super()._segment(request)
            finally:
                self.scripts = scripts
        return super()._segment(request)


def scripted_engine() -> ModeScripts:
    """AsyncThink finds all 4 solutions of problem 0 but never joins worker 2 on problem 1 (a format error);
    sequential thinking lists 2 of the 4 solutions (score 0.5, not correct)."""
    problems = make_task("countdown").dataset("test", N_PROBLEMS, 0)
    scripts, sequential = {}, {}
    for k, p in enumerate(problems):
        s = json.loads(p["gold"])
        w1, w2 = f"first two of {p['target']}", f"last two of {p['target']}"
        join2 = "<JOIN-2>" if k == 0 else ""
        scripts[p["question"]] = (f"split <FORK-1>{w1}</FORK-1><FORK-2>{w2}</FORK-2> wait <JOIN-1> ok {join2}"
                                  f"<ANSWER>{chr(10).join(s)}</ANSWER>")
        scripts[w1] = f"search<RETURN>{s[0]}; {s[1]}</RETURN>"
        scripts[w2] = f"search longer and longer<RETURN>{s[2]}; {s[3]}</RETURN>"
        sequential[p["question"]] = f"think <ANSWER>{s[0]}\n{s[1]}</ANSWER>"
    return ModeScripts(scripts, sequential)


def config(*extra: str):
    return load_eval_config(None, [
        f"tasks=[{{name: countdown, n: {N_PROBLEMS}}}]", "samples=2", "budgets=[300, 400]", "bootstrap=100",
        "runtime.prompts.style=compact", "runtime.parallel_traces=2", "runtime.temperature=0", "plots=false", *extra,
    ])


def untimed(summary):
    return [{k: v for k, v in r.items() if not k.startswith("wall_s")} for r in summary["results"]]


def by_method(summary):
    return {(r["mode"], r["budget"]): r for r in summary["results"]}


async def test_grid_records_figures_and_outputs(tmp_path):
    engine = scripted_engine()
    summary = await run_eval(config("plots=true"), tmp_path, engine=engine, progress=False)
    assert summary["meta"]["new_episodes"] == 3 * 2 * N_PROBLEMS * 2
    rows = by_method(summary)
    assert set(rows) == {(m, b) for m in ("sequential", "parallel", "asyncthink") for b in (300, 400)}
    at = rows[("asyncthink", 400)]
    assert at["complete"] and at["n_episodes"] == 4 and at["n_problems"] == 2
    assert at["accuracy"] == 0.5 and at["format_errors"] == {"unjoined_worker": 0.5}
    assert at["forks_per_episode"] == 2 and at["joins_per_episode"] == 1.5 and at["at_least"]["4"] == 0.5
    seq = rows[("sequential", 300)]
    assert seq["accuracy"] == 0 and seq["mean_score"] == 0.5 and seq["at_least"] == {"1": 1, "2": 1, "3": 0, "4": 0}
    assert rows[("parallel", 300)]["tokens_per_episode"] == 2 * seq["tokens_per_episode"]
    for name in ("config.yaml", "summary.json", "report.md", "plots/accuracy_vs_latency.png",
                 "plots/latency_distribution.png", "plots/timeline_countdown.png", "episodes/countdown.html"):
        assert (tmp_path / name).stat().st_size > 0, name
    report = (tmp_path / "report.md").read_text()
    assert "| AsyncThink 400 | 50.0 / " in report and "unjoined_worker" in report
    assert json.loads((tmp_path / "summary.json").read_text())["results"] == summary["results"]
    assert summary["plots"]["timelines"]["countdown"]["episode"].endswith("-0#0")  # forked and correct
    # each record keeps its problem's cluster (countdown: the number set); intervals say how many they resampled
    clusters = {p["cluster"] for p in make_task("countdown").dataset("test", N_PROBLEMS, 0)}
    records = read_jsonl(tmp_path / "records" / "countdown" / "asyncthink-400.jsonl")
    assert {ep.info["problem"]["cluster"] for ep in records} == clusters and at["n_clusters"] == len(clusters)
    assert {c["clusters"] for c in summary["comparisons"]} == {len(clusters)} and "problems / clusters" in report


async def test_same_seeds_in_every_mode_and_budget(tmp_path):
    await run_eval(config(), tmp_path, engine=scripted_engine(), progress=False, report_only=False)
    seeds = {}
    for path in (tmp_path / "records" / "countdown").glob("*.jsonl"):
        seeds[path.stem] = {ep.episode_id: ep.info["seed"] for ep in read_jsonl(path)}
    first = next(iter(seeds.values()))
    assert len(first) == 4 and len(set(first.values())) == 4
    assert all(s == first for s in seeds.values())


async def test_rerun_resumes_only_what_is_missing(tmp_path):
    engine = scripted_engine()
    first = await run_eval(config(), tmp_path, engine=engine, progress=False)
    requests = len(engine.requests)
    again = await run_eval(config(), tmp_path, engine=engine, progress=False)
    assert again["meta"]["new_episodes"] == 0 and len(engine.requests) == requests
    assert again["results"] == first["results"]

    records = tmp_path / "records" / "countdown"
    lines = (records / "asyncthink-400.jsonl").read_text().splitlines(keepends=True)
    (records / "asyncthink-400.jsonl").write_text("".join(lines[:-1]) + lines[-1][:50])  # a write torn by a crash
    seq = (records / "sequential-300.jsonl").read_text().splitlines(keepends=True)
    crashed = json.loads(seq[0]) | {"status": "error", "error": "EngineError: gone"}
    (records / "sequential-300.jsonl").write_text(json.dumps(crashed) + "\n" + "".join(seq[2:]))  # 1 error, 1 lost
    third = await run_eval(config(), tmp_path, engine=engine, progress=False)
    assert third["meta"]["new_episodes"] == 3
    assert (records / "asyncthink-400.jsonl.bak").exists()
    assert untimed(third) == untimed(first)  # rerun episodes replay the same scripts; only wall-clock differs
    retried = list(read_jsonl(records / "sequential-300.jsonl"))
    assert len(retried) == 4 and all(ep.status != EpisodeStatus.ERROR for ep in retried)  # one record per id


async def test_report_only_marks_missing_episodes_and_runs_nothing(tmp_path):
    engine = scripted_engine()
    await run_eval(config(), tmp_path, engine=engine, progress=False)
    path = tmp_path / "records" / "countdown" / "parallel-300.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))
    requests = len(engine.requests)
    summary = await run_eval(config(), tmp_path, engine=engine, progress=False, report_only=True)
    assert len(engine.requests) == requests and summary["meta"]["new_episodes"] == 0
    assert by_method(summary)[("parallel", 300)]["complete"] is False
    assert "*" in (tmp_path / "report.md").read_text()


async def test_a_directory_refuses_other_settings(tmp_path):
    await run_eval(config(), tmp_path, engine=scripted_engine(), progress=False)
    with pytest.raises(ValueError, match=r"runtime.temperature: 0 -> 0.5"):
        await run_eval(config("runtime.temperature=0.5"), tmp_path, engine=scripted_engine(), progress=False)
    with pytest.raises(ValueError, match=r"tasks.countdown.options.max_number: None -> 30"):
        await run_eval(config("tasks=[{name: countdown, n: 2, options: {max_number: 30}}]"), tmp_path,
                       engine=scripted_engine(), progress=False)  # other problems under the same label
    more = await run_eval(config("samples=3", "modes=[asyncthink]"), tmp_path, engine=scripted_engine(),
                          progress=False)  # a bigger grid with the same settings only adds episodes
    assert more["meta"]["new_episodes"] == 2 * N_PROBLEMS
    forced = await run_eval(config("runtime.temperature=0.5"), tmp_path, engine=scripted_engine(), progress=False,
                            force=True)
    assert forced["meta"]["new_episodes"] == 0


async def test_a_directory_refuses_problems_that_changed_under_the_same_settings(tmp_path):
    """A bring-your-own dataset file edited between runs: same config, other problems (by their hash)."""
    data = tmp_path / "mine.jsonl"
    rows = [{"q": f"What is {k}+1?", "a": f"#### {k + 1}", "id": str(k)} for k in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = f"{{path: {data}, question_field: q, answer_field: a, extractor: gsm8k}}"
    cfg = load_eval_config(None, [f"tasks=[{{name: math, options: {{dataset: {spec}}}}}]", "modes=[sequential]",
                                  "bootstrap=10", "plots=false"])
    out = tmp_path / "out"
    await run_eval(cfg, out, engine=ScriptedEngine({}), progress=False)
    await run_eval(cfg, out, engine=ScriptedEngine({}), progress=False)  # unchanged: resumes
    data.write_text(data.read_text().replace("What is 2+1?", "What is 2+2?").replace("#### 3", "#### 4"))
    load_spec.cache_clear()  # a new process (the next CLI run) reads the file again
    with pytest.raises(ValueError, match=r"data\.math-mine: '[0-9a-f]+' -> '[0-9a-f]+'"):
        await run_eval(cfg, out, engine=ScriptedEngine({}), progress=False)


async def test_api_keys_are_not_written(tmp_path):
    cfg = config("engine={kind: openai, base_urls: ['http://127.0.0.1:9'], api_key: sk-secret}")
    await run_eval(cfg, tmp_path, engine=scripted_engine(), progress=False)
    for name in ("config.yaml", "summary.json", "report.md"):
        assert "sk-secret" not in (tmp_path / name).read_text()


BUILT: list[ModeScripts] = []  # the engines built in this process (each child has its own list)


async def build_scripted(engine_config) -> ModeScripts:
    """``build_engine`` for the sharded runs: each child process builds the scripted engine, whatever the config."""
    BUILT.append(scripted_engine())
    return BUILT[-1]


async def test_processes_share_each_run_with_the_records_of_one(tmp_path, monkeypatch):
    one = await run_eval(config(), tmp_path / "one", engine=scripted_engine(), progress=False)
    monkeypatch.setattr(harness, "build_engine", build_scripted)  # pickled to the children by name
    sharded = config("processes=2", "max_in_flight=3", "engine={kind: openai, base_urls: ['http://127.0.0.1:9']}")
    two = await run_eval(sharded, tmp_path / "two", progress=False)
    assert len(BUILT) == 1 and len(BUILT[0].requests) <= 1  # this process's engine only warmed up: children ran
    assert two["meta"]["new_episodes"] == one["meta"]["new_episodes"] == 3 * 2 * N_PROBLEMS * 2
    assert untimed(two) == untimed(one)
    records = sorted((tmp_path / "two" / "records" / "countdown").glob("*.jsonl"))
    assert len(records) == 6 and all(len(list(read_jsonl(f))) == N_PROBLEMS * 2 for f in records)
    again = await run_eval(sharded, tmp_path / "two", progress=False)
    assert again["meta"]["new_episodes"] == 0


def test_processes_need_an_openai_engine():
    with pytest.raises(ValueError, match="processes=2 needs engine kind 'openai'.*got 'vllm'"):
        config("processes=2", "engine={kind: vllm, model: tiny}")
    with pytest.raises(ValueError, match="processes must be an integer >= 1, got 0"):
        config("processes=0")
    with pytest.raises(ValueError, match="processes must be an integer >= 1, got 2.5"):
        config("processes=2.5")


async def test_processes_need_an_engine_config_and_no_engine_of_the_callers(tmp_path):
    with pytest.raises(ValueError, match="processes=2 needs `engine` in the config"):
        await run_eval(config("processes=2"), tmp_path, progress=False)
    openai = "engine={kind: openai, base_urls: ['http://127.0.0.1:9']}"
    with pytest.raises(ValueError, match="processes=2 builds a client per process .* pass no engine"):
        await run_eval(config("processes=2", openai), tmp_path, engine=scripted_engine(), progress=False)
    assert not (tmp_path / "config.yaml").exists()  # refused before anything was written


async def test_no_engine_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no engine"):
        await run_eval(config(), tmp_path, progress=False)


def test_eval_command_report_only(tmp_path):
    import asyncio

    asyncio.run(run_eval(config(), tmp_path, engine=scripted_engine(), progress=False))
    result = CliRunner().invoke(app, ["eval", "--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path),
                                      "--report-only", "--no-progress", "bootstrap=50"])
    assert result.exit_code == 0, result.output
    assert "| AsyncThink 400 |" in result.output and "0 new episodes" in result.output
    bad = CliRunner().invoke(app, ["eval", "--config", str(tmp_path / "config.yaml"), "--out", str(tmp_path),
                                   "samples=0"])
    assert bad.exit_code != 0 and "samples must be >= 1, got 0" in bad.output

"""Cold start: synthesized traces are valid and varied, SFT rows match the runtime, SFT learns, teacher mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from asyncthink.config_io import load_config
from asyncthink.engines.base import Engine
from asyncthink.engines.types import Delta, Final, FinishReason
from asyncthink.envs import make_task
from asyncthink.episode import EventKind, read_jsonl
from asyncthink.prompts import PromptConfig, organizer_messages, render, sequential_messages
from asyncthink.protocol import FormatError, ParserConfig, Role, validate_text
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.tags import ProtocolTokens
from asyncthink.training.synth import SynthConfig, synthesize

COUNTDOWN = {"n_numbers": 3, "max_number": 9, "min_target": 5, "max_target": 40, "required": 2}


@pytest.fixture(scope="module")
async def synth_dir(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    cfg = load_config(SynthConfig, None, [f"tokenizer={tiny_model_dir}", "problems=40", f"out={out}",
                                          f"task_options={json.dumps(COUNTDOWN)}", "runtime.capacity=3",
                                          "runtime.prompts.style=compact"])
    await synthesize(cfg, progress=False)
    return out


async def test_traces_are_valid_score_one_and_varied(synth_dir, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = make_task("countdown", **COUNTDOWN)
    stats = json.loads((synth_dir / "stats.json").read_text())
    episodes = list(read_jsonl(synth_dir / "asyncthink.jsonl"))
    assert stats["asyncthink"]["yield"] >= 0.9 and len(episodes) == stats["asyncthink"]["kept"]
    for ep in episodes:
        assert not [e for e in validate_text(tok.decode(ep.organizer.completion_ids), ParserConfig(capacity=3))
                    if isinstance(e, FormatError)]
        for w in ep.rows[1:]:
            assert not [e for e in validate_text(w.text, ParserConfig(role=Role.WORKER, allow_fork=False))
                        if isinstance(e, FormatError)]
        problem = {"numbers": ep.info["problem"]["numbers"], "target": ep.info["problem"]["target"], "required": 2}
        assert task.score(task.extract_answer(ep.answer), problem) == 1.0
    print("topology histogram:", stats["asyncthink"]["topology_histogram"])
    assert len(stats["asyncthink"]["topology_histogram"]) >= 4
    assert len(stats["asyncthink"]["forks_histogram"]) >= 2
    assert stats["sequential"]["kept"] >= 36


async def test_sft_rows_equal_the_runtime_prompt_functions(synth_dir, tiny_model_dir):
    import datasets
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = datasets.load_from_disk(str(synth_dir / "dataset"))
    episodes = {e.episode_id: e for e in read_jsonl(synth_dir / "asyncthink.jsonl")}
    instruction = make_task("countdown", **COUNTDOWN).instruction()
    cfg = PromptConfig(style="compact")
    tags = ProtocolTokens(tok)
    for row in rows.filter(lambda r: r["mode"] == "asyncthink" and r["role"] == "organizer").select(range(10)):
        ep = episodes[row["episode_id"]]
        prompt = render(tok, organizer_messages(cfg, ep.question, instruction, 3), cfg)
        assert row["input_ids"][: len(prompt)] == prompt and set(row["completion_mask"][: len(prompt)]) == {0}
        completion, mask = row["input_ids"][len(prompt):], row["completion_mask"][len(prompt):]
        expected_appended = []
        for join in [e for e in ep.organizer.events if e.kind == EventKind.JOIN]:
            worker = ep.row(join.child)
            text = worker.text
            body = text[text.rindex("<RETURN>") + len("<RETURN>"): text.rindex("</RETURN>")]
            expected_appended += tags.appended_ids(tok.encode(body, add_special_tokens=False), join.index)
        assert [t for t, m in zip(completion, mask, strict=True) if m == 0] == expected_appended
    seq = rows.filter(lambda r: r["mode"] == "sequential").select(range(3))
    seq_eps = {e.episode_id: e for e in read_jsonl(synth_dir / "sequential.jsonl")}
    for row in seq:
        prompt = render(tok, sequential_messages(cfg, seq_eps[row["episode_id"]].question, instruction), cfg)
        assert row["input_ids"][: len(prompt)] == prompt and all(row["completion_mask"][len(prompt):])


async def test_sudoku_traces_are_valid(tiny_model_dir, tmp_path):
    cfg = load_config(
        SynthConfig,
        None,
        [
            f"tokenizer={tiny_model_dir}",
            "task=sudoku",
            "problems=8",
            f"out={tmp_path}",
            "task_options={size: 4}",
            "runtime.capacity=3",
            "runtime.prompts.style=compact",
        ],
    )
    stats = await synthesize(cfg, progress=False)
    assert stats["asyncthink"]["kept"] >= 6 and stats["sequential"]["kept"] >= 6


@pytest.mark.slow
async def test_sft_lowers_loss_and_checkpoint_runs_on_vllm(synth_dir, tiny_model_dir, tmp_path):
    from asyncthink.engines import GenerateRequest, SamplingParams
    from asyncthink.engines.base import generate_all
    from asyncthink.engines.vllm_engine import VLLMEngine
    from asyncthink.training.sft import SFTRunConfig, train_sft

    cfg = load_config(SFTRunConfig, None, [f"model={tiny_model_dir}", f"datasets=[{synth_dir}]", f"out={tmp_path}/sft",
                                           "max_steps=24", "batch_size=8", "logging_steps=4", "learning_rate=0.003"])
    out = train_sft(cfg)
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert losses[-1] < losses[0] - 0.5, losses
    assert (out / "loss.png").exists() and (out / "config.yaml").exists()
    engine = VLLMEngine.create(str(out), dtype="float32", max_model_len=1024, kv_cache_gib=1)
    try:
        ids, _, final = await generate_all(engine, GenerateRequest([5, 6, 7], SamplingParams(max_tokens=8), "sft"))
        assert 1 <= len(ids) <= 8 and final.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    finally:
        await engine.close()


async def test_completion_only_labels(synth_dir, tiny_model_dir, tmp_path):
    """TRL's labels are -100 exactly where our mask is 0 (prompt and appended returns)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from asyncthink.training.sft import SFTRunConfig, load_rows

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = SFTRunConfig(model=str(tiny_model_dir), datasets=[str(synth_dir)])
    rows = load_rows(cfg, tok).select(range(4))
    args = SFTConfig(output_dir=str(tmp_path), completion_only_loss=True, report_to="none", use_cpu=True,
                     max_length=4096)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), args=args, train_dataset=rows,
                         processing_class=tok)
    for prepared, raw in zip(trainer.train_dataset, rows, strict=True):
        assert [lab != -100 for lab in prepared["labels"]] == [bool(m) for m in raw["completion_mask"]]


# ------------------------------------------------------------ teacher mode


class CannedTeacher(Engine):
    """A teacher that answers every problem with the same written trace."""

    kind = "canned"

    def __init__(self, tokenizer, text: str) -> None:
        self.tokenizer, self.text, self.max_model_len = tokenizer, text, 100_000

    async def generate(self, request) -> AsyncIterator[Delta]:
        ids = self.tokenizer.encode(self.text, add_special_tokens=False)
        yield Delta(ids, [0.0] * len(ids), Final(FinishReason.STOP, None, 0, len(request.prompt_ids), len(ids)))


GOOD = """<ORGANIZER>Split it. <FORK-1>compute 2+3</FORK-1> meanwhile think. <JOIN-1>5</JOIN-1>
So the answer is <ANSWER>\\boxed{GOLD}</ANSWER></ORGANIZER>
<WORKER-1>2+3 is 5. <RETURN>5</RETURN></WORKER-1>"""


async def test_teacher_mode_keeps_valid_traces_and_reports_yield(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from asyncthink.training.teacher import TeacherRunConfig, parse_teacher_output, run_teacher

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    task = make_task("math", dataset="gsm8k_test")
    gold = task.dataset("test", n=1)[0]["gold"]
    cfg = TeacherRunConfig(tokenizer=str(tiny_model_dir), task_options={"dataset": "gsm8k_test"}, split="test",
                           problems=3, out=str(tmp_path), runtime=RuntimeConfig(capacity=3))
    stats = await run_teacher(cfg, CannedTeacher(tok, GOOD.replace("GOLD", gold)))
    assert stats["kept"] >= 1 and 0 < stats["yield"] <= 1 and sum(stats["rejected"].values()) == 3 - stats["kept"]
    assert set(stats["rejected"]) <= {"wrong_answer"}
    assert parse_teacher_output(GOOD.replace("<JOIN-1>5", "<JOIN-1>6")) == "join_1_differs_from_return"
    assert parse_teacher_output("no blocks") == "no_organizer_block"


@pytest.mark.slow
async def test_teacher_mode_against_a_real_server(vllm_server, tiny_model_dir, tmp_path):
    """The random tiny model is a useless teacher: the run completes and every rejection has a reason."""
    from asyncthink.training.teacher import TeacherRunConfig, run_teacher

    cfg = load_config(TeacherRunConfig, None, [
        f"engine={{kind: openai, base_urls: ['{vllm_server}'], tokenizer: '{tiny_model_dir}'}}",
        f"tokenizer={tiny_model_dir}", "task_options={dataset: gsm8k_test}", "split=test", "problems=4",
        "max_tokens=64", f"out={tmp_path}"])
    stats = await run_teacher(cfg)
    assert stats["problems"] == 4 and stats["kept"] + sum(stats["rejected"].values()) == 4

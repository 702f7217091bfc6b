"""Bring-your-own math data: local parquet / JSON Lines / Arrow with custom fields, unscorable rows counted,
and the size, source and hash of what a run read in its resolved config."""

from __future__ import annotations

import json
import logging

import datasets
import pytest

from asyncthink.envs import make_task
from asyncthink.envs.manifest import dataset_manifest, problems_sha256
from asyncthink.envs.math_data import MathDataSpec, extract_gold, load_spec

ROWS = [
    {"prompt_text": "What is 2+3?", "sol": "2+3 is 5\n#### 5", "uid": "a"},
    {"prompt_text": "What is 1000+234?", "sol": "so 1,000 + 234\n#### 1,234", "uid": "b"},
    {"prompt_text": "A row whose solution has no final answer line.", "sol": "we give up", "uid": "c"},
]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def spec(path, **extra) -> dict:
    return {"path": str(path), "question_field": "prompt_text", "answer_field": "sol", "extractor": "gsm8k",
            "id_field": "uid", **extra}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "arrow"])
def test_local_dataset_with_custom_field_names_loads_into_the_math_task(tmp_path, fmt):
    if fmt == "jsonl":
        path = write_jsonl(tmp_path / "mine.jsonl", ROWS)
    elif fmt == "parquet":
        path = str(tmp_path / "mine.parquet")
        datasets.Dataset.from_list(ROWS).to_parquet(path)
    else:
        path = str(tmp_path / "saved")
        datasets.DatasetDict({"test": datasets.Dataset.from_list(ROWS)}).save_to_disk(path)
    task = make_task("math", dataset=spec(path, split="test"))
    problems = task.dataset("test")
    assert [(p["id"], p["question"], p["gold"]) for p in problems] == [
        (f"{MathDataSpec(**spec(path)).label}-a", "What is 2+3?", "5"),
        (f"{MathDataSpec(**spec(path)).label}-b", "What is 1000+234?", "1234")]
    assert task.score(task.extract_answer("\\boxed{1234}"), problems[1]) == 1.0
    assert task.score("1235", problems[1]) == 0.0


def test_rows_without_extractable_gold_are_counted_and_reported(tmp_path, caplog):
    path = write_jsonl(tmp_path / "counted.jsonl", [*ROWS, {"prompt_text": "", "sol": "#### 3", "uid": "d"}])
    with caplog.at_level(logging.WARNING):
        loaded = load_spec(MathDataSpec(**spec(path)))
    assert (len(loaded.rows), loaded.skipped, loaded.total) == (2, 2, 4)
    assert "2 of 4 rows" in caplog.text
    task = make_task("math", train_dataset=spec(path))
    manifest = dataset_manifest("math", {"train_dataset": spec(path)}, "train", task.dataset("train"))
    assert manifest["size"] == 2 and manifest["skipped_unscorable"] == 2
    assert manifest["sources"] == {str((tmp_path / "counted.jsonl").resolve()): 2}


def test_a_folder_picks_the_files_of_its_split(tmp_path):
    (tmp_path / "d").mkdir()
    write_jsonl(tmp_path / "d" / "train.jsonl", ROWS[:1])
    write_jsonl(tmp_path / "d" / "test.jsonl", ROWS[1:2])
    problems = make_task("math", dataset=spec(tmp_path / "d", split="test")).dataset("test")
    assert [p["gold"] for p in problems] == ["1234"]


def test_bad_specs_are_refused_with_the_value_quoted(tmp_path):
    with pytest.raises(ValueError, match="'sqrt'"):
        make_task("math", dataset=spec(tmp_path, extractor="sqrt"))
    with pytest.raises(ValueError, match="aime25"):
        make_task("math", dataset="aime25")
    path = write_jsonl(tmp_path / "x.jsonl", ROWS)
    with pytest.raises(ValueError, match=r"no column\(s\) \['question'\]"):
        bad = {"path": path, "question_field": "question", "answer_field": "sol"}
        make_task("math", dataset=bad).dataset("test")


@pytest.mark.parametrize("value, extractor, gold", [
    (27.0, "none", "27"), ("  ", "none", None), (None, "none", None),
    ("x = \\boxed{\\frac{3}{4}}", "boxed", "\\frac{3}{4}"),
    ("no box", "boxed", None), ("it is 1,200 apples", "last_number", "1200"), ("#### -7", "gsm8k", "-7"),
])
def test_gold_extractors(value, extractor, gold):
    assert extract_gold(value, extractor) == gold


def test_shipped_files_stay_the_default_and_their_manifest_names_the_file():
    problems = make_task("math").dataset("test")
    m = dataset_manifest("math", {}, "test", problems)
    assert m["size"] == 30 and m["skipped_unscorable"] == 0 and list(m["sources"].values()) == [30]
    (source,) = m["sources"]
    assert source.startswith("aime24 (") and source.endswith("data/math/aime24.jsonl)")


def test_the_hash_ignores_order_and_sees_any_change():
    problems = make_task("math_gen").dataset("train", n=20)
    assert problems_sha256(problems) == problems_sha256(problems[::-1])
    assert problems_sha256(problems) != problems_sha256(problems[:-1])
    changed = [dict(p) for p in problems]
    changed[3]["gold"] = "999"
    assert problems_sha256(changed) != problems_sha256(problems)


async def test_an_eval_run_writes_the_data_it_read_into_its_resolved_config(tmp_path):
    import yaml

    from asyncthink.eval.config import load_eval_config
    from asyncthink.eval.harness import run_eval
    from tests.fakes import OutcomeEngine

    path = write_jsonl(tmp_path / "mine.jsonl", ROWS)
    cfg = load_eval_config(None, ["modes=[sequential]", "plots=false", "bootstrap=10",
                                  f"tasks=[{{name: math, options: {{dataset: {json.dumps(spec(path))}}}}}]"])
    from transformers import AutoTokenizer

    engine = OutcomeEngine(AutoTokenizer.from_pretrained("models/tiny-organizer"), ["<ANSWER>5</ANSWER>"],
                           organizer_marker="<|im_start|>user")
    await run_eval(cfg, tmp_path / "out", engine=engine, progress=False)
    written = yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())
    assert list(written["data"]) == ["math-mine"]
    entry = written["data"]["math-mine"]
    assert entry["size"] == 2 and entry["skipped_unscorable"] == 1 and len(entry["sha256"]) == 64
    assert load_eval_config(tmp_path / "out" / "config.yaml").data == written["data"]  # still loads


@pytest.mark.slow
async def test_an_rl_run_writes_the_data_it_read_into_its_resolved_config(tiny_model_dir, tmp_path):
    import yaml

    from tests.test_rl import one_step

    trainer, _ = await one_step(tiny_model_dir, tmp_path, ["task=math_gen", "dataset_size=4"],
                                ["<ANSWER>\\boxed{3}</ANSWER>", "no"])
    entry = yaml.safe_load((tmp_path / "config.yaml").read_text())["data"]
    assert entry["size"] == 4 and entry["sha256"] == problems_sha256(trainer.problems)
    assert entry["sources"] == {"generated:math_gen": 4} and entry["options"] == trainer.cfg.task_options

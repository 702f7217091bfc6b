"""The generated math task: problems, gold and scorer agree with an independent brute-force count; splits are
disjoint; its cold-start traces replay as valid, correct episodes; one RL step on it trains and logs."""

from __future__ import annotations

import math
import random
import re

import pytest

from asyncthink.envs import make_task
from asyncthink.envs.math_gen import MathGenConfig, problem_split
from asyncthink.training.synth import SYNTHESIZERS
from asyncthink.training.synth_trace import TopologyOptions

GROUP = re.compile(r"(\d+) (boxes|bags|packs|rows) of (\d+) (\w+)")
GIVE = re.compile(r"gives away (\d+) (\w+)")


def brute_force(question: str) -> int:
    """Count the items one by one, from the question's text alone."""
    items = [1 for a, _, b, _ in GROUP.findall(question) for _ in range(int(a)) for _ in range(int(b))]
    given = GIVE.search(question)
    return len(items) - (int(given.group(1)) if given else 0)


@pytest.mark.parametrize("split", ["train", "test"])
def test_gold_and_scorer_agree_with_a_brute_force_count(split):
    task = make_task("math_gen")
    for p in task.dataset(split, n=150, seed=3):
        value = brute_force(p["question"])
        assert p["gold"] == str(value) and value >= 1
        right = [v for v in range(-5, 200) if task.score(str(v), p) == 1.0]
        assert right == [value]
        assert task.score(task.extract_answer(f"so \\boxed{{{value}}}"), p) == 1.0
        assert task.score(task.extract_answer(f"\\boxed{{{value + 1}}}"), p) == 0.0
        assert task.score(task.extract_answer(f"{value}.0"), p) == 1.0  # the math scorer compares numbers


def test_splits_are_disjoint_and_the_options_shape_the_problems():
    cfg = MathGenConfig(min_groups=3, max_groups=3, min_factor=2, max_factor=3, p_give_away=0.0)
    # 20 sums in all at these options: 200 problems only by wording (one sum in many words)
    task = make_task("math_gen", min_groups=3, max_groups=3, min_factor=2, max_factor=3, p_give_away=0.0,
                     distinct="wording")
    train, test = task.dataset("train", n=200), task.dataset("test", n=40)
    key = lambda p: (tuple(sorted(map(tuple, p["groups"]))), p["give_away"])  # noqa: E731
    assert not {key(p) for p in train} & {key(p) for p in test}
    for split, problems in (("train", train), ("test", test)):
        for p in problems:
            assert problem_split([tuple(g) for g in p["groups"]], p["give_away"], cfg.test_fraction) == split
            assert len(p["groups"]) == 3 and all(2 <= x <= 3 for g in p["groups"] for x in g)
            assert p["give_away"] == 0 and "gives away" not in p["question"]
    assert task.dataset("train", n=5) == task.dataset("train", n=5)
    with pytest.raises(ValueError, match="got 4, 3"):
        make_task("math_gen", min_groups=4, max_groups=3)


async def test_cold_start_traces_replay_as_valid_correct_episodes():
    from transformers import AutoTokenizer

    from asyncthink.runtime_config import Mode, RuntimeConfig
    from asyncthink.training.replay import replay_episode

    tok = AutoTokenizer.from_pretrained("models/tiny-organizer")  # any tokenizer with the protocol tags
    task, rng = make_task("math_gen"), random.Random(0)
    forks = set()
    for p in task.dataset("train", n=25):
        for mode in (Mode.ASYNCTHINK, Mode.SEQUENTIAL):
            trace = SYNTHESIZERS["math_gen"](p, mode, rng, TopologyOptions(p_self_search=0.4))
            organizer, workers = trace.organizer, trace.worker_texts()
            runtime = RuntimeConfig(mode=mode, capacity=4, max_organizer_tokens=10**6,
                                    max_worker_tokens=10**6, prompts={"style": "compact"})
            ep = await replay_episode(tok, runtime, p, organizer, workers, task, p["id"])
            assert ep.status == "ok" and ep.score == 1.0, (organizer, ep.error_codes)
            forks.add(int(ep.metrics["forks"]) if mode == Mode.ASYNCTHINK else -1)
    assert {0, 1, 2} <= forks  # varied topologies, some without forks (RL has somewhere to go)


@pytest.mark.slow
async def test_one_rl_step_on_the_generated_task_changes_parameters_and_logs_status_counts(tiny_model_dir,
                                                                                           tmp_path):
    from tests.test_rl import changed, logged, one_step

    gold = make_task("math_gen").dataset("train", n=1)[0]["gold"]
    outcomes = [f"<ANSWER>\\boxed{{{gold}}}</ANSWER>", "<ANSWER>\\boxed{0}</ANSWER>", "no answer",
                f"<FORK-1>w</FORK-1><JOIN-1><ANSWER>\\boxed{{{gold}}}</ANSWER>"]
    # compact prompts: only the organizer's prompt says "organizer", so the fake engine tells the rows apart
    trainer, before = await one_step(tiny_model_dir, tmp_path, ["task=math_gen", "dataset_size=1",
                                                                "runtime.prompts={style: compact}"], outcomes)
    m = logged(trainer)
    assert changed(trainer, before) and math.isfinite(m["loss"])
    assert m["status/ok"] + m["status/format_error"] == 8 and m["status/ok"] > 0 and m["status/error"] == 0
    assert m["format_error/no_answer"] == m["status/format_error"] > 0 and 0 < m["accuracy"] < 1

"""``register_task``: a user's task sits beside the built-ins (registered first or not), a taken name is a
clear error unless the override is meant, and a registered task scores episodes in child processes too."""

from __future__ import annotations

import functools

import pytest

from asyncthink import envs
from asyncthink.task import Problem, Task

BUILTIN = ["countdown", "math", "math_gen", "sudoku"]


class EchoTask(Task):
    """Answer with the problem's gold word."""

    name = "echo"

    def __init__(self, word: str = "yes"):
        self.word = word

    def dataset(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        return [{"id": f"echo-{k}", "question": f"say {self.word}", "gold": self.word} for k in range(n or 2)]

    def instruction(self) -> str:
        return "Say the word."

    def extract_answer(self, answer_text: str | None) -> str | None:
        return answer_text.strip() if answer_text else None

    def score(self, answer: str | None, problem: Problem) -> float:
        return float(answer == problem["gold"])

    def normalize(self, answer: str | None) -> str | None:
        return answer


def make_echo(**options) -> EchoTask:
    """Module level, so children can import it (a lambda or a local function could not be pickled)."""
    return EchoTask(**options)


def make_other(**options) -> EchoTask:
    return EchoTask(**options)


@pytest.fixture
def fresh_registry(monkeypatch):
    """An empty registry whose built-ins are not loaded yet, as in a new process; restored afterwards."""
    monkeypatch.setattr(envs, "_FACTORIES", {})
    monkeypatch.setattr(envs, "_BUILTIN_LOADED", False)


def test_builtins_stay_after_a_task_is_registered_first(fresh_registry):
    envs.register_task("echo", make_echo)  # the first call: once, this hid every built-in
    assert envs.make_task("countdown").name == "countdown"
    assert envs.task_names() == sorted([*BUILTIN, "echo"])
    assert envs.make_task("echo", word="hi").dataset(n=1)[0]["gold"] == "hi"


def test_a_taken_name_is_an_error_quoting_it(fresh_registry):
    envs.register_task("echo", make_echo)
    envs.register_task("echo", make_echo)  # the same factory again is no clash
    taken = r"task 'echo' is already registered \(to tests.test_task_registry.make_echo\)"
    with pytest.raises(ValueError, match=taken):
        envs.register_task("echo", make_other)
    with pytest.raises(ValueError, match="task 'countdown' is already registered"):
        envs.register_task("countdown", make_echo)
    assert envs.task_factory("echo") is make_echo and envs.make_task("countdown").name == "countdown"


def test_replace_overrides_on_purpose(fresh_registry):
    envs.register_task("echo", make_echo)
    envs.register_task("echo", make_other, replace=True)
    envs.register_task("countdown", make_echo, replace=True)
    assert envs.task_factory("echo") is make_other and envs.make_task("countdown").name == "echo"


def test_bad_names_and_factories_are_refused(fresh_registry):
    with pytest.raises(ValueError, match="non-empty string, got ''"):
        envs.register_task("", make_echo)
    with pytest.raises(TypeError, match="task 'echo' must be callable, got 'make_echo'"):
        envs.register_task("echo", "make_echo")
    with pytest.raises(ValueError, match=r"unknown task 'nope'; known: \['countdown'"):
        envs.make_task("nope")


async def test_a_registered_task_scores_episodes_in_child_processes(fresh_registry):
    from asyncthink.batch import make_items
    from asyncthink.runtime_config import Mode, RuntimeConfig
    from asyncthink.shards import ShardSpec, run_sharded
    from tests.fakes import ScriptedEngine

    envs.register_task("echo", make_echo)
    task_factory = functools.partial(envs.task_factory("echo"), word="hi")  # as the eval harness builds it
    problems = task_factory().dataset(n=2)
    scripts = {"say hi": "<ANSWER>hi</ANSWER>"}
    runtime = RuntimeConfig(mode=Mode.SEQUENTIAL, max_organizer_tokens=100)
    spec = ShardSpec(functools.partial(ScriptedEngine, scripts), runtime, task_factory=task_factory)
    episodes = await run_sharded(spec, make_items(problems), processes=2)  # spawned: register_task never ran there
    assert [(ep.task, ep.score) for ep in episodes] == [("echo", 1.0), ("echo", 1.0)]

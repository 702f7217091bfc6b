"""Tasks: multi-solution countdown, math and Sudoku, behind one factory.

``make_task("countdown", required=4)`` returns a ``Task``. A new task registers
a factory with ``register_task``; the runtime and trainer only see ``Task``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncthink.task import Problem, Task

_FACTORIES: dict[str, Callable[..., Task]] = {}


def register_task(name: str, factory: Callable[..., Task]) -> None:
    _FACTORIES[name] = factory


def task_names() -> list[str]:
    _load_builtin()
    return sorted(_FACTORIES)


def make_task(name: str, **options: Any) -> Task:
    """Build a task by name; options are the task's own (see each module)."""
    return task_factory(name)(**options)


def task_factory(name: str) -> Callable[..., Task]:
    """The factory registered as ``name``: picklable by reference, so a child process can build the task even
    though ``register_task`` never ran there."""
    _load_builtin()
    if name not in _FACTORIES:
        raise ValueError(f"unknown task {name!r}; known: {sorted(_FACTORIES)}")
    return _FACTORIES[name]


def _load_builtin() -> None:
    if _FACTORIES:
        return
    from asyncthink.envs import countdown, math_gen, math_task, sudoku

    register_task("countdown", countdown.make)
    register_task("math", math_task.make)
    register_task("math_gen", math_gen.make)
    register_task("sudoku", sudoku.make)


__all__ = ["Problem", "Task", "make_task", "register_task", "task_factory", "task_names"]

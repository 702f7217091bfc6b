"""Tasks: multi-solution countdown, math and Sudoku, behind one factory.

``make_task("countdown", required=4)`` returns a ``Task``. A new task registers
a factory with ``register_task``; the runtime and trainer only see ``Task``.
The built-in tasks are always registered (loaded on first use, so importing
this package stays cheap), and a name names one factory: registering a taken
name is an error unless ``replace=True`` says the override is meant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asyncthink.task import Problem, Task

_FACTORIES: dict[str, Callable[..., Task]] = {}
_BUILTIN_LOADED = False


def register_task(name: str, factory: Callable[..., Task], replace: bool = False) -> None:
    """Make ``make_task(name, **options)`` call ``factory(**options)``. ``name`` may not be taken (built-in
    names included) unless ``replace`` is set; registering the same factory twice is harmless. For evaluations
    over processes the factory must be importable (a module-level function): children receive it pickled by
    reference and never run this registration."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a task name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"the factory of task {name!r} must be callable, got {factory!r}")
    _load_builtin()
    taken = _FACTORIES.get(name)
    if taken is not None and taken is not factory and not replace:
        raise ValueError(f"task {name!r} is already registered (to {_describe(taken)}); choose another name, "
                         f"or pass replace=True to override it")
    _FACTORIES[name] = factory


def task_names() -> list[str]:
    """Every registered task name, built-ins included, sorted."""
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
    """Register the built-in tasks, once, before anything else is registered (``register_task`` calls this
    first), so a user's task can neither hide them nor take their names by accident."""
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    from asyncthink.envs import countdown, math_gen, math_task, sudoku

    _FACTORIES.update(countdown=countdown.make, math=math_task.make, math_gen=math_gen.make, sudoku=sudoku.make)
    _BUILTIN_LOADED = True  # only once they are in: a failed import is raised again on the next call, not hidden


def _describe(factory: Callable[..., Task]) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


__all__ = ["Problem", "Task", "make_task", "register_task", "task_factory", "task_names"]

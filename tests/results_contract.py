"""What every shipped ``results.json`` must hold for other tools to read it, and how tests load the scripts
that write one (they are scripts, not package modules)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
RUN_KEYS = {"mode", "checkpoint", "seed", "n", "accuracy", "accuracy_ci", "latency", "eta_over_capacity", "statuses"}
COMPARISON_KEYS = {"a", "b", "metric", "diff", "ci", "clusters", "seeds"}


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

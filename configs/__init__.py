"""Runnable configs (installed as ``asyncthink.configs``, so ``asyncthink demo`` finds them from any folder).

Each YAML file is one run: synthesis, SFT, RL or evaluation; its comments say
which settings follow the paper and which are ours.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def config_path(name: str) -> Path:
    """The path of a shipped config, e.g. ``config_path("demo.yaml")``."""
    path = HERE / name
    if not path.is_file():
        raise FileNotFoundError(
            f"no shipped config {name!r} in {HERE}; shipped: {sorted(p.name for p in HERE.glob('*.yaml'))}"
        )
    return path

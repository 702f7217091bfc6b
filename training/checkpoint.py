"""Atomic training checkpoints: model, optimizer, scheduler, RNG states, step and data position.

A checkpoint is written into a temporary folder and renamed into place, and
the ``latest`` pointer is replaced atomically after it, so a run killed at any
moment (SIGKILL included) leaves either the previous checkpoint or the new
one, never half of one. Resuming restores everything needed to continue
exactly: the next step sees the same data and the same random numbers.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class TrainState:
    """Where a run is: the next step to run and how far into the data it is."""

    step: int = 0
    data_position: int = 0


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(root: str | Path, state: TrainState, model: Any, optimizer: Any, scheduler: Any,
                    keep: int = 2) -> Path:
    """Write ``root/step-N`` atomically and point ``root/latest`` at it; keep the newest ``keep``."""
    root = Path(root)
    final = root / f"step-{state.step:06d}"
    tmp = root / f".tmp-step-{state.step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(),
                "state": state.__dict__}, tmp / "trainer_state.pt")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = root / ".latest.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, root / "latest")
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Path | None:
    pointer = Path(root) / "latest"
    if not pointer.exists():
        return None
    path = Path(root) / pointer.read_text().strip()
    return path if (path / "trainer_state.pt").exists() else None


def load_checkpoint(path: str | Path, model: Any, optimizer: Any, scheduler: Any) -> TrainState:
    """Restore weights, optimizer, scheduler and RNG from ``path``; return the train state."""
    from safetensors.torch import load_file

    path = Path(path)
    weights = {}
    for f in sorted(path.glob("*.safetensors")):
        weights.update(load_file(f))
    _load_weights(path, model, weights)
    blob = torch.load(path / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    set_rng_state(blob["rng"])
    return TrainState(**blob["state"])


def _load_weights(path: Path, model: Any, weights: dict[str, Any]) -> None:
    """Load a checkpoint's weights: all of them, or with a PEFT model only its adapter's (all it saves)."""
    if hasattr(model, "peft_config"):
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, weights)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if result.unexpected_keys or missing or not weights:
            raise ValueError(f"checkpoint {path} does not fit the adapter: missing {missing}, "
                             f"unexpected {result.unexpected_keys}")
        return
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if unexpected or (set(missing) - tied - {"lm_head.weight"}):
        raise ValueError(f"checkpoint {path} does not fit the model: missing {missing}, unexpected {unexpected}")

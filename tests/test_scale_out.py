"""The scale-out recipe run small: ``scripts/scale_out_small.py`` (two vLLM servers, two trainer processes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_trainers_on_two_vllm_servers_sync_both(tmp_path):
    """About 2.5-3 minutes on the 2-core machine: every check of the script passes (see its docstring)."""
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "scale_out_small.py"), "--out", str(out),
                        "--steps", "2"],
                       cwd=REPO, capture_output=True, text=True, timeout=900)
    summary = json.loads((out / "summary.json").read_text())
    assert p.returncode == 0 and summary["failures"] == [], p.stdout[-3000:] + p.stderr[-3000:]
    assert all(summary["checks"].values()) and len(summary["steps"]) == 2

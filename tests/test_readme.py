"""The README stays true to the repository: its file tree lists exactly the tracked files, and CI runs its
test command."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_readme_tree_lists_exactly_the_tracked_files():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "readme_tree.py"), "--check", str(REPO / "README.md")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    readme, ci = (REPO / "README.md").read_text(), (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci

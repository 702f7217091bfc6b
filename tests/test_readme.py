"""The docs stay true to the repository: the file tree (docs/FILES.md) lists exactly the tracked files, the
README's links reach files that exist, and CI runs the README's test command."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs a git checkout")
def test_readme_tree_lists_exactly_the_tracked_files():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "readme_tree.py"), "--check", str(REPO / "docs" / "FILES.md")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readme_test_command():
    readme, ci = (REPO / "README.md").read_text(), (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_readme_and_docs_links_reach_files():
    import re

    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_readme_shows_the_result_in_its_first_screen():
    lines = (REPO / "README.md").read_text().splitlines()
    first_screen = "\n".join(lines[:60])
    assert "make demo" in first_screen and "make test" in first_screen and "| **AsyncThink** |" in first_screen

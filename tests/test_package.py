"""The package stands alone: a clone with no sibling folders builds one wheel under one namespace,
whose installed copy finds its math data, shipped model and configs from any folder, and the core
imports its users only through CLI registration."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "asyncthink"
ROLES = ("asyncthink.envs", "asyncthink.eval", "asyncthink.training")
CLI_MODULES = {"cli.py", "solve_cli.py", "serve/cli.py"}  # register the roles' commands: allowed to import them

needs_git = pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                               reason="needs a git checkout")

LOADERS = """
import json, sys
import asyncthink
from asyncthink.configs import config_path
from asyncthink.envs.math_task import SOURCES, load_rows
from asyncthink.models import shipped_model
print(json.dumps({"package": asyncthink.__file__, "rows": {name: len(load_rows(name)) for name in sorted(SOURCES)},
                  "model": str(shipped_model()), "demo": str(config_path("demo.yaml"))}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a fresh clone of this repository (committed files only) in an empty folder."""
    root = tmp_path_factory.mktemp("clean")
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(root / "asyncthink")], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(root / "dist"), str(root / "asyncthink")], check=True, timeout=300)
    return next((root / "dist").glob("asyncthink-*.whl"))


@needs_git
def test_wheel_installs_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as zf:
        top = {name.split("/")[0] for name in zf.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"asyncthink"}


@needs_git
def test_installed_copy_finds_its_data_from_any_folder(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)  # a pure-Python wheel installs by unpacking
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("ASYNCTHINK_MATH_DATA", None)
    out = subprocess.run([sys.executable, "-c", LOADERS], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert Path(found["package"]).is_relative_to(site)
    assert found["rows"] == {"aime24": 30, "aime_1983_2023_train": 975, "amc23": 40, "gsm8k_test": 1319,
                             "math500": 500}
    assert (Path(found["model"]) / "model.safetensors").is_file() and Path(found["demo"]).is_file()


@needs_git
def test_nothing_points_outside_the_repository():
    sibling = "shared"  # the supply folder beside the repository during development; users have no such folder
    pattern = rf"\.\./{sibling}|{sibling}/data"
    hits = subprocess.run(["git", "grep", "-nE", pattern, "--", "."], cwd=REPO, capture_output=True, text=True).stdout
    assert hits == ""


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    names |= {n.value for n in ast.walk(ast.parse(path.read_text()))
              if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.startswith(ROLES)}
    return names


def test_the_core_imports_its_users_only_to_register_commands():
    offenders = {}
    for path in CORE.rglob("*.py"):
        rel = path.relative_to(CORE).as_posix()
        bad = sorted(n for n in _imports(path) if n.startswith(ROLES))
        if bad and rel not in CLI_MODULES:
            offenders[rel] = bad
    assert offenders == {}

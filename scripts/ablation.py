"""The tiny organizer's ablation, like the paper's: SFT only vs SFT+RL, with vs without the concurrency reward.

Each checkpoint is evaluated in AsyncThink mode on the held-out countdown
problems of ``configs/demo.yaml`` (same seeds, same engine settings), and the
table (accuracy, mean score, critical-path latency, eta/capacity, format
errors) is printed and written to ``OUT/ablation.md``.

    python scripts/ablation.py --out runs/tiny/ablation
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHECKPOINTS = {
    "SFT only": "runs/tiny/sft9",
    "SFT + RL (accuracy + concurrency reward)": "runs/tiny/rl/final",
    "SFT + RL (accuracy only, lambda = 0)": "runs/tiny/rl-no-concurrency/final",
}


def evaluate(name: str, model: str, out: Path) -> dict:
    from asyncthink.eval.config import load_eval_config
    from asyncthink.eval.harness import evaluate as run

    cfg = load_eval_config(REPO / "configs" / "demo.yaml", [f"engine.model={REPO / model}", "modes=[asyncthink]",
                                                           f"title={name}"])
    cfg = replace(cfg, tasks=[t for t in cfg.tasks if t.name == "countdown"])  # the demo's held-out countdown
    summary = run(cfg, out, progress=True)
    result = summary["results"][0]
    result["mean_reward"] = mean_reward(out / result["records"])
    return result


def mean_reward(records: Path) -> float:
    """The RL reward of ``configs/rl_countdown_tiny.yaml`` (accuracy + 0.2 x concurrency, -1 on format errors)
    averaged over the episodes, so every checkpoint is judged by the same reward."""
    from asyncthink.config_io import load_config
    from asyncthink.envs.rewards import episode_reward
    from asyncthink.episode import read_jsonl
    from asyncthink.training.rl_config import RLConfig

    rewards = load_config(RLConfig, REPO / "configs" / "rl_countdown_tiny.yaml", []).rewards
    values = [episode_reward(ep, rewards).total for ep in read_jsonl(records)]
    return sum(values) / len(values)


def table(rows: dict[str, dict]) -> str:
    lines = ["| checkpoint | reward (lambda 0.2) | accuracy % [95% CI] | mean score | latency | eta / capacity | "
             "forks / ep | format errors % |", "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        low, high = r["accuracy_ci"]
        lines.append(
            f"| {name} | {r['mean_reward']:+.3f} | {100 * r['accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}] | "
            f"{r['mean_score']:.3f} | {r['latency_mean']:.0f} | "
            f"{r['eta_over_capacity']:.3f} | {r['forks_per_episode']:.2f} | {100 * r['format_error_rate']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "runs" / "tiny" / "ablation"))
    out = Path(parser.parse_args().out)
    rows = {}
    for k, (name, model) in enumerate(CHECKPOINTS.items()):
        if (REPO / model).exists():
            rows[name] = evaluate(name, model, out / f"run{k}")
    text = table(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.md").write_text(text + "\n")
    (out / "ablation.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()

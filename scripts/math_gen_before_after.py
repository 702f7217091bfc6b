"""The tiny math organizer before and after RL: SFT only vs SFT + RL on held-out generated math problems.

Both checkpoints are evaluated by the eval harness with ``configs/eval_math_gen_tiny.yaml`` (same problems,
seeds, engine and sampling), then compared pairwise over problems with ``asyncthink.eval.compare`` (a
percentile bootstrap of the mean per-problem difference that resamples clusters: problems with one sum). The
table, with episode status counts beside accuracy, is printed and written to ``OUT/before_after.md`` (and
``.json``).

    python scripts/math_gen_before_after.py --sft runs/mathgen/sft --rl runs/mathgen/rl/final \
        --out runs/mathgen/eval
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METRICS = ("accuracy", "eta_over_capacity", "latency", "format_error", "forks")


def evaluate(model: str, out: Path, overrides: list[str]) -> tuple[dict, list]:
    """Run the eval config on one checkpoint; its summary row and its episode records."""
    from asyncthink.episode import read_jsonl
    from asyncthink.eval.config import load_eval_config
    from asyncthink.eval.harness import evaluate as run

    config = REPO / "configs" / "eval_math_gen_tiny.yaml"
    cfg = load_eval_config(config, [f"engine.model={model}", *overrides])
    started = time.perf_counter()
    result = run(cfg, out, progress=False)["results"][0]
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result, list(read_jsonl(out / result["records"]))


def status_counts(episodes: list) -> str:
    counts = collections.Counter(str(ep.status) for ep in episodes)
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def table(rows: dict[str, tuple[dict, list]], comparisons: list) -> str:
    lines = ["| checkpoint | accuracy % [95% CI] | eta / capacity | latency (tokens) | forks / ep | "
             "format errors % | episode status counts | eval wall s |", "|---|---|---|---|---|---|---|---|"]
    for name, (r, eps) in rows.items():
        low, high = r["accuracy_ci"]
        lines.append(f"| {name} | {100 * r['accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}] | "
                     f"{r['eta_over_capacity']:.3f} | {r['latency_mean']:.1f} | "
                     f"{r['forks_per_episode']:.2f} | "
                     f"{100 * r['format_error_rate']:.1f} | {status_counts(eps)} | {r['wall_s']} |")
    paired = ["| metric | problems | clusters | SFT only | SFT + RL | RL - SFT [95% CI] | |",
              "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        scale, unit = (100.0, " pp") if c.metric in ("accuracy", "format_error") else (1.0, "")
        verdict = "significant" if c.significant else "not significant"
        paired.append(f"| {c.metric} | {c.problems} | {c.clusters} | {c.mean_a * scale:.3g} | {c.mean_b * scale:.3g} | "
                      f"{c.diff * scale:+.3f}{unit} [{c.ci[0] * scale:+.3f}, {c.ci[1] * scale:+.3f}] | "
                      f"{verdict} |")
    heading = "Paired (RL - SFT, same problems, bootstrap over clusters of problems):"
    return "\n".join([*lines, "", heading, "", *paired])


def main() -> None:
    from asyncthink.eval.compare import compare

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sft", default="runs/mathgen/sft")
    parser.add_argument("--rl", default="runs/mathgen/rl/final")
    parser.add_argument("--out", default="runs/mathgen/eval")
    parser.add_argument("--sft-out", default=None,
                        help="SFT's evaluation folder (default OUT/sft); RL seeds that share it evaluate SFT once")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the eval config")
    args = parser.parse_args()
    out = Path(args.out)
    rows = {"SFT only": evaluate(args.sft, Path(args.sft_out) if args.sft_out else out / "sft", args.overrides),
            "SFT + RL": evaluate(args.rl, out / "rl", args.overrides)}
    sft_eps, rl_eps = rows["SFT only"][1], rows["SFT + RL"][1]
    comparisons = [compare(sft_eps, rl_eps, m, "SFT only", "SFT + RL", n_boot=2000) for m in METRICS]
    text = table(rows, comparisons)
    (out / "before_after.md").write_text(text + "\n")
    (out / "before_after.json").write_text(json.dumps(
        {"results": {k: r for k, (r, _) in rows.items()},
         "status": {k: status_counts(e) for k, (_, e) in rows.items()},
         "paired": [c.to_dict() for c in comparisons]}, indent=2))
    print(text)


if __name__ == "__main__":
    main()

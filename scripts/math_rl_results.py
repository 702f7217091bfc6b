"""Collect the math RL seed runs into one machine-readable ``results.json``, and the docs' table from it.

Reads what ``scripts/math_rl_seeds.sh`` wrote: for each held-out list (``content``: 200 distinct sums;
``wording``: 200 wordings of 108 sums), SFT's evaluation (``runs/mathgen/eval-<list>-sft``) and each RL seed's
(``runs/mathgen/eval-<list>-s<seed>/rl``). Writes ``results.json`` with

- ``runs``: one object per list x mode x checkpoint x seed (``mode``, ``checkpoint`` ``sft`` or ``rl``, ``seed``,
  ``problems`` (the list), ``n``, ``clusters``, ``accuracy``, ``accuracy_ci``, ``latency``, ``eta_over_capacity``,
  ``forks``, ``format_errors``, ``statuses``);
- ``comparisons``: RL minus SFT per list, mode, metric and seed, and with the seeds pooled (every RL seed's
  episodes on a problem averaged: ``seeds`` lists those pooled), each with ``a``, ``b``, ``metric``, ``diff``,
  ``ci`` (95 %, a bootstrap over clusters of related problems), ``clusters``, ``significant``;
- ``seed_spread``: per list, mode and metric, the mean and standard deviation of the per-seed differences.

``--table`` prints the markdown table the docs carry (``docs/math-rl.md``; a test checks they agree).

    python scripts/math_rl_results.py [--root runs/mathgen] [--seeds 0 1 2] \
        [--out models/tiny-math-organizer/results.json] [--table]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asyncthink.eval.results import METRICS, comparison_entry, load_eval, run_entry, seed_spread  # noqa: E402

LISTS = {"content": "200 distinct sums", "wording": "200 wordings of 108 sums"}


def collect(root: Path, seeds: list[int]) -> dict:
    runs, comparisons, spread = [], [], []
    for name, problems in LISTS.items():
        sft = load_eval(root / f"eval-{name}-sft")
        rl = {s: load_eval(root / f"eval-{name}-s{s}" / "rl") for s in seeds}
        for mode, (row, sft_eps) in sft.items():
            runs.append(run_entry(row, "sft", None, problems=problems))
            runs += [run_entry(rl[s][mode][0], "rl", s, problems=problems) for s in seeds]
            for metric in METRICS:
                where = {"metric": metric, "mode": mode, "problems": problems}
                per_seed = [_rl_minus_sft(sft_eps, rl[s][mode][1], [s], **where) for s in seeds]
                pooled = [ep for s in seeds for ep in rl[s][mode][1]]
                comparisons += [*per_seed, _rl_minus_sft(sft_eps, pooled, seeds, **where)]
                spread.append(seed_spread(per_seed, problems=problems, mode=mode))
    return {"model": "models/tiny-math-organizer (the shipped checkpoint is not one of these seeds)",
            "config": "configs/eval_math_gen_tiny.yaml", "runs": runs, "comparisons": comparisons,
            "seed_spread": spread}


def _rl_minus_sft(sft: list, rl: list, seeds: list[int], metric: str, mode: str, problems: str) -> dict:
    return comparison_entry(sft, rl, metric, f"{mode} sft", f"{mode} rl", seeds, problems=problems, mode=mode)


def markdown(results: dict, mode: str = "asyncthink") -> str:
    """RL minus SFT accuracy per seed and pooled, on both lists, for one mode."""
    lines = ["| held-out list | mode | SFT accuracy % | RL accuracy % by seed | RL - SFT by seed (pp) | "
             "seeds pooled: RL - SFT [95% CI] | clusters |", "|---|---|---|---|---|---|---|"]
    for problems in LISTS.values():
        for m in (mode, "sequential"):
            sft = next(r for r in results["runs"] if r["problems"] == problems and r["mode"] == m
                       and r["checkpoint"] == "sft")
            rls = [r for r in results["runs"] if r["problems"] == problems and r["mode"] == m
                   and r["checkpoint"] == "rl"]
            cs = [c for c in results["comparisons"] if c["problems"] == problems and c["mode"] == m
                  and c["metric"] == "accuracy"]
            pooled = next(c for c in cs if len(c["seeds"]) > 1 or len(rls) == 1)
            by_seed = " / ".join(f"{100 * r['accuracy']:.1f}" for r in rls)
            diffs = " / ".join(f"{100 * c['diff']:+.1f}" for c in cs if len(c["seeds"]) == 1)
            verdict = "" if pooled["significant"] else ", not significant"
            lines.append(f"| {problems} | {m} | {100 * sft['accuracy']:.1f} | {by_seed} | {diffs} | "
                         f"{100 * pooled['diff']:+.1f} [{100 * pooled['ci'][0]:+.1f}, {100 * pooled['ci'][1]:+.1f}]"
                         f"{verdict} | {pooled['clusters']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "mathgen")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=REPO / "models" / "tiny-math-organizer" / "results.json")
    parser.add_argument("--table", action="store_true", help="only print the docs' table from --out")
    args = parser.parse_args()
    if not args.table:
        args.out.write_text(json.dumps(collect(args.root, args.seeds), indent=1) + "\n")
    print(markdown(json.loads(args.out.read_text())))


if __name__ == "__main__":
    main()

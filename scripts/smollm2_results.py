"""Collect SmolLM2-135M-Instruct's math organizer runs into ``results.json``, and the docs' tables from it.

Reads what ``scripts/smollm2_math.sh`` wrote under ``--root`` (``runs/smollm2``): the evaluations of the prompted
base model (``math_eval_base``), the LoRA SFT checkpoint (``math_eval_sft``), the full fine-tuning arm where it was
run (``math_eval_sft_full``), each RL seed (``math_eval_rl-s<seed>``) and each seed of the fork-keeping reward
arm where it was run (``math_eval_rl_forks-s<seed>``), all on ``configs/eval_math_gen_smollm2.yaml`` (held-out
math_gen and countdown, three modes), and each RL run's ``metrics.jsonl`` (``math_rl-s<seed>``,
``math_rl_forks-s<seed>``). Writes ``results.json`` (``eval/results.py`` says what each key holds):

- ``runs``: every task x mode x checkpoint (``base``, ``sft``, ``sft-full``, ``rl``, ``rl-forks``) x seed;
- ``comparisons``: per task and mode, SFT minus base, full fine-tuning minus LoRA, RL minus SFT (each seed, and
  the seeds pooled), the fork-keeping arm minus SFT and minus RL, and on each RL checkpoint AsyncThink minus each
  baseline trained alike (same checkpoint, its sequential and parallel modes);
- ``seed_spread``: the mean and standard deviation across seeds of each per-seed difference;
- ``training``: each RL run's first and last 10 steps and its update's health;
- ``stages``: the seconds each stage took, as the stage itself recorded them.

``--table`` prints the markdown tables the docs carry from ``--out``, ``--readme`` the README's (tests check both
agree).

    python scripts/smollm2_results.py [--root runs/smollm2] [--seeds 0 1] [--fork-seeds 0] \
        [--out models/smollm2-math-organizer/results.json] [--table] [--readme]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asyncthink.eval.results import (  # noqa: E402
    METRICS,
    comparison_entry,
    load_eval,
    run_entry,
    seed_spread,
    training_entry,
)
from asyncthink.modes import Mode  # noqa: E402

TASKS = {"math_gen-heldout": "held-out math_gen", "countdown": "held-out countdown"}
"""Task labels of the evaluation config -> how the tables name them."""
ASYNCTHINK, SEQUENTIAL, PARALLEL = Mode.ASYNCTHINK.value, Mode.SEQUENTIAL.value, Mode.PARALLEL.value
MODES = (SEQUENTIAL, PARALLEL, ASYNCTHINK)
RL_ARMS = {"rl": "rl", "rl-forks": "rl_forks"}
"""RL checkpoint name -> its folders' infix (``math_<infix>-s<seed>``, ``math_eval_<infix>-s<seed>``)."""


def rl_runs(arms: dict[str, list[int]]) -> list[tuple[str, int, str]]:
    """(checkpoint, seed, run folder suffix) of every RL run asked for (``arms``: checkpoint -> seeds), main arm
    first."""
    return [(arm, s, f"{infix}-s{s}") for arm, infix in RL_ARMS.items() for s in arms.get(arm, [])]


def evaluations(root: Path, arms: dict[str, list[int]], task: str) -> dict[tuple[str, int | None], dict]:
    """(checkpoint, seed) -> mode -> (summary row, episodes), for the checkpoints evaluated so far."""
    folders = {("base", None): root / "math_eval_base", ("sft", None): root / "math_eval_sft",
               ("sft-full", None): root / "math_eval_sft_full",
               **{(arm, s): root / f"math_eval_{run}" for arm, s, run in rl_runs(arms)}}
    return {key: load_eval(folder, task) for key, folder in folders.items() if (folder / "summary.json").exists()}


def compare_sides(a: dict[int | None, list], b: dict[int | None, list], metric: str, names: tuple[str, str],
                  task: str) -> tuple[list[dict], list[dict]]:
    """``b - a`` for each seed of ``b`` (a side without seeds pairs with every one) and pooled over seeds."""
    seeds = [s for s in b if s in a or None in a]
    per_seed = [comparison_entry(a.get(s, a.get(None)), b[s], metric, *names, [] if s is None else [s], task=task)
                for s in seeds]
    if len(seeds) < 2:
        return per_seed, []
    pooled_a = [ep for s in seeds for ep in a.get(s, [])] or a[None]
    pooled_b = [ep for s in seeds for ep in b[s]]
    pooled = comparison_entry(pooled_a, pooled_b, metric, *names, seeds, task=task)
    return [*per_seed, pooled], [seed_spread(per_seed, task=task)]


def pairs() -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """((checkpoint a, mode a), (checkpoint b, mode b)) for every comparison the docs state."""
    steps = (("base", "sft"), ("sft", "sft-full"), ("sft", "rl"), ("sft", "rl-forks"), ("rl", "rl-forks"))
    out = [((before, m), (after, m)) for m in MODES for before, after in steps]
    return out + [((ck, baseline), (ck, ASYNCTHINK)) for ck in RL_ARMS for baseline in (SEQUENTIAL, PARALLEL)]


def collect(root: Path, seeds: list[int], fork_seeds: list[int] = ()) -> dict:
    arms = {"rl": list(seeds), "rl-forks": list(fork_seeds)}
    runs, comparisons, spread = [], [], []
    for task in TASKS:
        evals = evaluations(root, arms, task)
        for (checkpoint, seed), modes in evals.items():
            runs += [run_entry(row, checkpoint, seed, task=task) for row, _ in modes.values()]
        for (ck_a, mode_a), (ck_b, mode_b) in pairs():
            side_a = {s: e[mode_a][1] for (c, s), e in evals.items() if c == ck_a and mode_a in e}
            side_b = {s: e[mode_b][1] for (c, s), e in evals.items() if c == ck_b and mode_b in e}
            if not side_a or not side_b:
                continue
            for metric in METRICS:
                found, spreads = compare_sides(side_a, side_b, metric, (f"{mode_a} {ck_a}", f"{mode_b} {ck_b}"), task)
                comparisons += found
                spread += spreads
    training = [training_entry(root / f"math_{run}", checkpoint=arm, seed=s) for arm, s, run in rl_runs(arms)
                if (root / f"math_{run}" / "metrics.jsonl").exists()]
    return {"model": "models/smollm2-math-organizer", "base": "SmolLM2-135M-Instruct (asyncthink models fetch)",
            "eval_config": "configs/eval_math_gen_smollm2.yaml", "rl_config": "configs/rl_math_gen_smollm2.yaml",
            "rl_forks_config": "configs/rl_math_gen_smollm2_forks.yaml",
            "runs": runs, "comparisons": comparisons, "seed_spread": spread, "training": training,
            "stages": stage_times(root, arms)}


def stage_times(root: Path, arms: dict[str, list[int]]) -> list[dict]:
    """Each stage's seconds, where its output recorded them: SFT's trainer runtime, RL's launcher wall time
    (``wall_s.txt``), an evaluation's ``elapsed_s`` (a resumed run counts only its last part)."""
    found = []
    for name, folder in (("sft", "math_sft"), ("sft-full", "math_sft_full")):
        rows = [json.loads(line) for line in (root / folder / "metrics.jsonl").open()] \
            if (root / folder / "metrics.jsonl").exists() else []
        found += [{"stage": f"{name} train", "seconds": r["train_runtime"]} for r in rows if "train_runtime" in r]
    for arm, s, run in rl_runs(arms):
        wall = root / f"math_{run}" / "wall_s.txt"
        if wall.exists():
            found.append({"stage": f"{arm} train seed {s}", "seconds": float(wall.read_text())})
    evals = ["base", "sft", "sft_full", *(run for _, _, run in rl_runs(arms))]
    for name in evals:
        summary = root / f"math_eval_{name}" / "summary.json"
        if summary.exists():
            seconds = json.loads(summary.read_text())["meta"].get("elapsed_s")
            found.append({"stage": f"eval {name.replace('_', '-')}", "seconds": seconds})
    return found


# ---------------------------------------------------------------- tables


def _interval(c: dict, scale: float = 100.0, digits: int = 1) -> str:
    verdict = "" if c["significant"] else ", n.s."
    return (f"{c['diff'] * scale:+.{digits}f} [{c['ci'][0] * scale:+.{digits}f}, {c['ci'][1] * scale:+.{digits}f}]"
            f"{verdict}")


def _statuses(statuses: dict) -> str:
    return " / ".join(f"{statuses.get(k, 0)}" for k in ("ok", "format_error", "budget_exceeded", "error"))


def runs_table(results: dict) -> str:
    """Every task x checkpoint x mode: accuracy with its interval, latency, concurrency, format errors, statuses."""
    lines = ["| task | checkpoint | seed | mode | n | accuracy % [95% CI] | latency | eta / capacity | forks / ep | "
             "format errors % | ok / format error / budget / error |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        lo, hi = r["accuracy_ci"]
        seed = "" if r["seed"] is None else r["seed"]
        lines.append(f"| {TASKS[r['task']]} | {r['checkpoint']} | {seed} | {r['mode']} | {r['n']} | "
                     f"{100 * r['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | {r['latency']:.0f} | "
                     f"{r['eta_over_capacity']:.3f} | {r['forks']:.2f} | {100 * r['format_errors']:.1f} | "
                     f"{_statuses(r['statuses'])} |")
    return "\n".join(lines)


def comparisons_table(results: dict) -> str:
    """Every accuracy and latency difference, per seed and pooled, with its clustered interval."""
    lines = ["| task | b - a | seeds | accuracy (pp) | latency (tokens) | clusters |", "|---|---|---|---|---|---|"]
    by_key: dict[tuple, dict[str, dict]] = {}
    for c in results["comparisons"]:
        by_key.setdefault((c["task"], c["a"], c["b"], tuple(c["seeds"])), {})[c["metric"]] = c
    for (task, a, b, seeds), cs in by_key.items():
        accuracy, latency = cs["accuracy"], cs["latency"]
        lines.append(f"| {TASKS[task]} | {b} - {a} | {', '.join(map(str, seeds)) or '-'} | {_interval(accuracy)} | "
                     f"{_interval(latency, 1.0, 0)} | {accuracy['clusters']} |")
    return "\n".join(lines)


def training_table(results: dict) -> str:
    lines = ["| checkpoint | seed | steps | reward first 10 -> last 10 | accuracy first 10 -> last 10 | logprob gap | "
             "update KL | groups without signal | statuses | wall |", "|---|---|---|---|---|---|---|---|---|---|"]
    for t in results["training"]:
        statuses = ", ".join(f"{k} {v}" for k, v in t["statuses"].items())
        wall = "" if t["wall_s"] is None else f"{t['wall_s'] / 60:.0f} min"
        lines.append(f"| {t['checkpoint']} | {t['seed']} | {t['steps']} | "
                     f"{t['reward_first10']:.3f} -> {t['reward_last10']:.3f} | "
                     f"{t['accuracy_first10']:.3f} -> {t['accuracy_last10']:.3f} | {t['logprob_gap']:.1e} | "
                     f"{t['update_kl'] or 0:.1e} | {t['groups_without_signal']:.2f} | {statuses} | {wall} |")
    return "\n".join(lines)


def stages_table(results: dict) -> str:
    lines = ["| stage | minutes (2-core CPU) |", "|---|---|"]
    lines += [f"| {t['stage']} | {t['seconds'] / 60:.1f} |" for t in results.get("stages", [])
              if t["seconds"] is not None]
    return "\n".join(lines)


def readme_tables(results: dict) -> str:
    """The README's summary: held-out math_gen per checkpoint and mode, and the time of each stage."""
    lines = ["| checkpoint | mode | accuracy % [95% CI] | latency | eta / capacity | forks / ep | "
             "ok / format error / budget / error |", "|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        if r["task"] != "math_gen-heldout":
            continue
        lo, hi = r["accuracy_ci"]
        name = r["checkpoint"] if r["seed"] is None else f"{r['checkpoint']} seed {r['seed']}"
        lines.append(f"| {name} | {r['mode']} | {100 * r['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | "
                     f"{r['latency']:.0f} | {r['eta_over_capacity']:.3f} | {r['forks']:.2f} | "
                     f"{_statuses(r['statuses'])} |")
    return "\n".join(lines) + "\n\n" + stages_table(results)


def tables(results: dict) -> str:
    """The docs' tables, those with rows (an RL run not yet done leaves its tables out)."""
    made = (runs_table(results), comparisons_table(results), training_table(results), stages_table(results))
    return "\n\n".join(t for t in made if t.count("\n") > 1)


def evaluated_fork_seeds(root: Path) -> list[int]:
    """The fork-keeping arm's seeds with a finished evaluation under ``root``."""
    found = (p.parent.name.rsplit("-s", 1)[1] for p in root.glob(f"math_eval_{RL_ARMS['rl-forks']}-s*/summary.json"))
    return sorted(int(s) for s in found if s.isdigit())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "smollm2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--fork-seeds", type=int, nargs="*", default=None,
                        help="seeds of the fork-keeping reward arm (configs/rl_math_gen_smollm2_forks.yaml); "
                             "default: every seed evaluated under --root, as the full fine-tuning arm is found")
    parser.add_argument("--out", type=Path, default=REPO / "models" / "smollm2-math-organizer" / "results.json")
    parser.add_argument("--table", action="store_true", help="only print the docs' tables from --out")
    parser.add_argument("--readme", action="store_true", help="print the README's tables instead of the docs'")
    args = parser.parse_args()
    if not args.table:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fork_seeds = evaluated_fork_seeds(args.root) if args.fork_seeds is None else args.fork_seeds
        args.out.write_text(json.dumps(collect(args.root, args.seeds, fork_seeds), indent=1) + "\n")
    results = json.loads(args.out.read_text())
    print(readme_tables(results) if args.readme else tables(results))


if __name__ == "__main__":
    main()

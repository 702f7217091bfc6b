"""The tiny organizer's RL experiments on countdown, and the ``results.json`` its docs are generated from.

Every RL run starts from the one SFT checkpoint (``runs/tiny/sft``, built by ``scripts/train_tiny_organizer.sh``)
and differs from the shipped config (``configs/rl_countdown_tiny.yaml``) in the overrides its arm names
(``ARMS``): one factor each, so a difference between two arms has one cause. Each arm runs with as many seeds as
asked, into ``runs/tiny/rl-<arm>-s<seed>``. Every run logs ``update_kl`` (how far each step moves the policy)
beside the trainer's other diagnostics.

Every checkpoint is then evaluated as ``make demo`` evaluates the shipped model: the 62 held-out countdown
problems x 7 samples of ``configs/demo.yaml`` (same engine, sampling and budgets), in the modes ``MODES`` names
for its arm (AsyncThink for all; sequential and parallel thinking too for SFT and for the runs trained on
sequential rollouts). Evaluations are cached per checkpoint and mode.

``collect`` writes ``results.json`` with

- ``runs``: one object per mode x checkpoint x seed: ``mode``, ``checkpoint`` (``sft``, ``rl`` for the shipped
  arm, ``rl-<arm>`` for the others), ``seed``, ``n``, ``clusters``, ``accuracy``, ``accuracy_ci``, ``score``,
  ``latency``, ``eta_over_capacity``, ``forks``, ``format_errors``, ``statuses``;
- ``training``: one object per RL run: reward, score and accuracy over its first and last 10 steps on its own
  training prompts, the update diagnostics (entropy, sampler/trainer logprob gap, importance weights, grad
  norm, update KL, groups without signal, tokens trained per role), status counts and wall time;
- ``comparisons``: ``b - a`` per metric with its 95 % interval (a bootstrap over the number sets, so related
  problems move together), for every seed and with the seeds pooled: ``a``, ``b``, ``metric``, ``diff``,
  ``ci``, ``clusters``, ``seeds`` (the RL seeds pooled into it), ``significant``;
- ``seed_spread``: the mean and standard deviation across seeds of each per-seed difference.

``table`` prints the tables ``docs/tiny-organizer.md`` carries (a test checks they agree with ``results.json``).

    python scripts/ablation.py train ARM [ARM ...] [--seeds 0 1 2]   # measured: about 13 min per 50-step run
    python scripts/ablation.py evaluate                              # every checkpoint that exists
    python scripts/ablation.py collect [--out models/tiny-organizer/results.json]   # and the curves beside it
    python scripts/ablation.py table
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asyncthink.eval.results import (  # noqa: E402
    METRICS,
    WINDOW,
    comparison_entry,
    load_eval,
    run_entry,
    seed_spread,
    training_entry,
)
from asyncthink.modes import Mode  # noqa: E402

RUNS = REPO / "runs" / "tiny"
RL_CONFIG = "configs/rl_countdown_tiny.yaml"
SFT = "runs/tiny/sft"
DIAGNOSE = ["log_update_kl=true"]
"""Overrides every run gets: the step-size diagnostic (one extra forward pass per step)."""

BEFORE_FIX = ["modes=[]", "runtime.mode=asyncthink", "learning_rate=1e-4", "warmup_steps=0", "advantage=std",
              "loss_norm=token_mean", "kl_coef=0", "rewards.concurrency_weight=0.5"]
"""The RL config that lowered its own training reward (the previous shipped model's): the diagnosis arms each
change one factor of it."""

ARMS: dict[str, tuple[list[str], str]] = {
    "rl": ([], "the shipped config"),
    "before-fix": (BEFORE_FIX, "the config before the fix: lr 1e-4, no warmup, std advantages, token mean"),
    "lr-3e-5": ([*BEFORE_FIX, "learning_rate=3e-5"], "before the fix, learning rate 3e-5"),
    "warmup-10": ([*BEFORE_FIX, "warmup_steps=10"], "before the fix, linear warmup over 10 steps"),
    "advantage-mean": ([*BEFORE_FIX, "advantage=mean"], "before the fix, advantages R - mean (no std)"),
    "row-mean": ([*BEFORE_FIX, "loss_norm=row_mean"], "before the fix, each row's token mean averaged over rows"),
    "kl-0.05": ([*BEFORE_FIX, "kl_coef=0.05"], "before the fix, k3 KL to the SFT model at weight 0.05"),
    "acc-only": (["rewards.concurrency_weight=0"], "the shipped config, accuracy reward only (lambda = 0)"),
    "asyncthink-only": (["modes=[asyncthink]"], "the shipped config on AsyncThink rollouts only"),
    "sequential-only": (["modes=[sequential]"], "the shipped config on sequential rollouts only (the baselines' "
                                                "own checkpoint)"),
    "no-cold-start": (["model=runs/tiny/model", "max_steps=10"], "the shipped config from the random base model"),
}
"""Arm name -> (overrides of ``RL_CONFIG``, later ones winning; what differs). A random model's episodes are all
format errors, so 10 steps show it."""

ASYNCTHINK = Mode.ASYNCTHINK.value
BASELINE_MODES = (Mode.SEQUENTIAL.value, Mode.PARALLEL.value)
ALL_MODES = [ASYNCTHINK, *BASELINE_MODES]
MODES = {"sft": ALL_MODES, "rl": ALL_MODES, "rl-acc-only": ALL_MODES, "rl-sequential-only": ["sequential", "parallel"]}
"""Modes each checkpoint is evaluated in (any other: AsyncThink only). Parallel thinking votes over sequential
traces, so a checkpoint trained on sequential rollouts is the parallel baseline's too."""



# ---------------------------------------------------------------- train


def run_dir(arm: str, seed: int) -> Path:
    return RUNS / f"rl-{arm}-s{seed}"


def train(arm: str, seed: int) -> None:
    """One RL run (resumes a killed one; a finished one is left alone)."""
    out = run_dir(arm, seed)
    if (out / "final").exists():
        print(f"{out} is done", flush=True)
        return
    overrides, _ = ARMS[arm]
    cmd = [sys.executable, "-m", "asyncthink", "train", "rl", "--config", RL_CONFIG, f"model={SFT}", *DIAGNOSE,
           *overrides, f"seed={seed}", f"out={out.relative_to(REPO)}"]
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    (out / "wall_s.txt").write_text(f"{time.perf_counter() - started:.0f}\n")
    print(f"TIME {time.perf_counter() - started:.0f} s: RL arm {arm} seed {seed}", flush=True)


# ---------------------------------------------------------------- evaluate


def checkpoints() -> dict[tuple[str, int | None], Path]:
    """(checkpoint name, seed) -> model folder, for every checkpoint on disk."""
    found: dict[tuple[str, int | None], Path] = {}
    if (RUNS / "sft").exists():
        found[("sft", None)] = RUNS / "sft"
    for arm in ARMS:
        for final in sorted(RUNS.glob(f"rl-{arm}-s*/final")):
            seed = int(final.parent.name.rsplit("-s", 1)[1])
            found[(checkpoint_name(arm), seed)] = final
    return found


def checkpoint_name(arm: str) -> str:
    return "rl" if arm == "rl" else f"rl-{arm}"


def eval_dir(root: Path, name: str, seed: int | None) -> Path:
    return root / (name if seed is None else f"{name}-s{seed}")


def evaluate(model: Path, out: Path, modes: list[str]) -> None:
    """The demo's held-out countdown on one checkpoint, in ``modes`` (what exists in ``out`` is kept)."""
    from asyncthink.eval.config import load_eval_config
    from asyncthink.eval.harness import evaluate as run

    cfg = load_eval_config(REPO / "configs" / "demo.yaml", [f"engine.model={model}", f"modes=[{', '.join(modes)}]",
                                                           f"title={out.name}", "plots=false"])
    cfg = replace(cfg, tasks=[t for t in cfg.tasks if t.name == "countdown"])
    started = time.perf_counter()
    run(cfg, out, progress=True)
    print(f"TIME {time.perf_counter() - started:.0f} s: evaluate {out.name} ({', '.join(modes)})", flush=True)


# ---------------------------------------------------------------- collect


def training(folder: Path, arm: str, seed: int) -> dict:
    """What a run did on its own training prompts, and how healthy its updates were."""
    return training_entry(folder, WINDOW, arm=arm, checkpoint=checkpoint_name(arm), seed=seed,
                          overrides=ARMS[arm][0])


def pairs(evals: dict[tuple[str, int | None], dict]) -> list[tuple[str, str, str, str]]:
    """(mode a, checkpoint a, mode b, checkpoint b) for each comparison the docs state: every checkpoint
    against SFT in the same mode, AsyncThink against the baselines trained alike (the shipped checkpoint's own
    sequential and parallel modes, and the sequential-only run's when it exists), concurrency reward vs none."""
    evaluated = {(name, mode) for (name, _), modes in evals.items() for mode in modes}
    out = [(mode, "sft", mode, name) for name, mode in sorted(evaluated)
           if name != "sft" and ("sft", mode) in evaluated]
    shipped = ("rl", ASYNCTHINK)
    if shipped not in evaluated:
        return out
    for baseline in ("rl", "rl-sequential-only"):
        out += [(mode, baseline, ASYNCTHINK, "rl") for mode in BASELINE_MODES if (baseline, mode) in evaluated]
    if ("rl-acc-only", ASYNCTHINK) in evaluated:
        out.append((ASYNCTHINK, "rl-acc-only", ASYNCTHINK, "rl"))
    # one checkpoint per mode: AsyncThink on its own run against the baselines on theirs, and each mode on the
    # mixed checkpoint against its own-mode checkpoint (which of the two designs serves a mode better)
    own = {ASYNCTHINK: "rl-asyncthink-only", **{mode: "rl-sequential-only" for mode in BASELINE_MODES}}
    if (own[ASYNCTHINK], ASYNCTHINK) in evaluated:
        out += [(mode, own[mode], ASYNCTHINK, own[ASYNCTHINK]) for mode in BASELINE_MODES
                if (own[mode], mode) in evaluated]
    out += [(mode, own[mode], mode, "rl") for mode in own if (own[mode], mode) in evaluated]
    return out


def compare_pair(evals: dict, a: tuple[str, str], b: tuple[str, str]) -> tuple[list[dict], list[dict]]:
    """Per-seed and pooled comparisons of mode/checkpoint ``b`` minus ``a``, and the seed spread of each metric.
    Seeds pair up where both sides have them; SFT (no seed) pairs with every seed of the other side."""
    (mode_a, ck_a), (mode_b, ck_b) = a, b
    side_a = {s: e[mode_a][1] for (n, s), e in evals.items() if n == ck_a and mode_a in e}
    side_b = {s: e[mode_b][1] for (n, s), e in evals.items() if n == ck_b and mode_b in e}
    seeds = sorted(s for s in side_b if s in side_a or None in side_a) if side_b else []
    label_a, label_b = f"{mode_a} {ck_a}", f"{mode_b} {ck_b}"
    out, spread = [], []
    for metric in METRICS:
        per_seed = [comparison_entry(side_a.get(s, side_a.get(None)), side_b[s], metric, label_a, label_b, [s])
                    for s in seeds]
        out += per_seed
        if len(seeds) > 1:
            pooled_a = [ep for s in seeds for ep in side_a.get(s, [])] or side_a[None]
            pooled_b = [ep for s in seeds for ep in side_b[s]]
            out.append(comparison_entry(pooled_a, pooled_b, metric, label_a, label_b, seeds))
            spread.append(seed_spread(per_seed))
    return out, spread


def collect(eval_root: Path) -> dict:
    evals = {key: load_eval(eval_dir(eval_root, *key)) for key in checkpoints()
             if (eval_dir(eval_root, *key) / "summary.json").exists()}
    runs = [run_entry(row, name, seed) for (name, seed), modes in sorted(evals.items(), key=_order)
            for row, _ in modes.values()]
    training_runs = [training(folder.parent, arm, int(folder.parent.name.rsplit("-s", 1)[1]))
                for arm in ARMS for folder in sorted(RUNS.glob(f"rl-{arm}-s*/metrics.jsonl"))]
    comparisons, spread = [], []
    for mode_a, ck_a, mode_b, ck_b in pairs(evals):
        found, seed_spread = compare_pair(evals, (mode_a, ck_a), (mode_b, ck_b))
        comparisons += found
        spread += seed_spread
    return {"model": "models/tiny-organizer", "eval_config": "configs/demo.yaml (countdown, held out)",
            "rl_config": RL_CONFIG, "arms": {arm: {"overrides": o, "what": w} for arm, (o, w) in ARMS.items()},
            "runs": runs, "training": training_runs, "comparisons": comparisons, "seed_spread": spread}


def _order(item: tuple) -> tuple:
    (name, seed), _ = item
    return (name != "sft", name, -1 if seed is None else seed)


def plot(folder: Path) -> list[Path]:
    """``ablation_curves.png``: every arm's seed 0 overlaid, on the panels that tell learning from drift;
    ``seed_curves.png``: every seed of the shipped arm and of the config before the fix, on the paper's Figure 6."""
    from asyncthink.training.rl_logging import FIGURE6, HEALTH, plot_runs

    arms = {arm: run_dir(arm, 0) / "metrics.jsonl" for arm in ARMS if arm != "no-cold-start"}
    seeds = {f"{arm} s{s}": run_dir(arm, s) / "metrics.jsonl" for arm in ("rl", "before-fix") for s in range(5)}
    made = [plot_runs(arms, folder / "ablation_curves.png", "GRPO arms on countdown (training prompts, seed 0)",
                      panels=HEALTH),
            plot_runs(seeds, folder / "seed_curves.png", "GRPO seeds on countdown (training prompts)",
                      panels=FIGURE6)]
    return [p for p in made if p is not None]


# ---------------------------------------------------------------- tables


def _pp(x: float) -> str:
    return f"{100 * x:+.1f}"


def _interval(c: dict, scale: float = 100.0, digits: int = 1) -> str:
    verdict = "" if c["significant"] else ", n.s."
    return f"{c['diff'] * scale:+.{digits}f} [{c['ci'][0] * scale:+.{digits}f}, {c['ci'][1] * scale:+.{digits}f}]" \
           f"{verdict}"


def training_table(results: dict) -> str:
    """One row per RL run: the training curve's ends and the update's health."""
    lines = ["| arm | seed | score first 10 -> last 10 | reward first 10 -> last 10 | entropy | logprob gap | "
             "max TIS weight | grad norm | update KL (step 0 / mean) | groups without signal | worker tokens | "
             "wall (s) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in results["training"]:
        lines.append(
            f"| {t['arm']} | {t['seed']} | {t['score_first10']:.3f} -> {t['score_last10']:.3f} | "
            f"{t['reward_first10']:+.3f} -> {t['reward_last10']:+.3f} | {t['entropy_first10']:.3f} -> "
            f"{t['entropy_last10']:.3f} | {t['logprob_gap']:.1e} | {t['tis_raw_max']:.2f} | {t['grad_norm']:.2f} | "
            f"{t['update_kl_step0']:.4f} / {t['update_kl']:.4f} | {100 * t['groups_without_signal']:.0f} % | "
            f"{100 * t['worker_token_share']:.0f} % | {t['wall_s'] or 0:.0f} |")
    return "\n".join(lines)


def accuracy_table(results: dict) -> str:
    """One row per checkpoint and mode: accuracy by seed, and the difference to SFT in the same mode."""
    lines = ["| checkpoint | mode | accuracy % by seed | minus SFT by seed (pp) | seeds pooled: minus SFT [95% CI] | "
             "seed spread (sd, pp) | latency | format errors % | clusters |", "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["checkpoint"], r["mode"]) for r in results["runs"]}, key=lambda k: (k[0] != "sft", k))
    for checkpoint, mode in keys:
        rows = [r for r in results["runs"] if r["checkpoint"] == checkpoint and r["mode"] == mode]
        cs = [c for c in results["comparisons"] if c["a"] == f"{mode} sft" and c["b"] == f"{mode} {checkpoint}"
              and c["metric"] == "accuracy"]
        per_seed = " / ".join(_pp(c["diff"]) for c in cs if len(c["seeds"]) == 1)
        pooled = next((c for c in cs if len(c["seeds"]) > 1), cs[0] if len(cs) == 1 else None)
        spread = next((s["std"] for s in results["seed_spread"] if s["a"] == f"{mode} sft"
                       and s["b"] == f"{mode} {checkpoint}" and s["metric"] == "accuracy"), None)
        accuracy = " / ".join(f"{100 * r['accuracy']:.1f}" for r in rows)
        lines.append(
            f"| {checkpoint} | {mode} | {accuracy} | {per_seed} | "
            f"{_interval(pooled) if pooled else ''} | {'' if spread is None else f'{100 * spread:.1f}'} | "
            f"{statistics.fmean(r['latency'] for r in rows):.0f} | "
            f"{100 * statistics.fmean(r['format_errors'] for r in rows):.1f} | {rows[0]['clusters']} |")
    return "\n".join(lines)


HEADER = ["| b minus a | seeds | accuracy (pp) [95% CI] | latency (tokens) [95% CI] | eta / capacity [95% CI] | "
          "clusters |", "|---|---|---|---|---|---|"]


def comparison_row(results: dict, a: str, b: str, label: str, pooled: bool = True) -> list[str]:
    """``b - a`` in every metric: with the seeds pooled (or the one seed there is), else seed 0's; [] if absent."""
    cs = {c["metric"]: c for c in results["comparisons"] if c["a"] == a and c["b"] == b
          and ((len(c["seeds"]) > 1 or _single(results)) if pooled else c["seeds"] == [0])}
    if len(cs) < len(METRICS):
        return []
    return [f"| {label} | {', '.join(map(str, cs['accuracy']['seeds']))} | {_interval(cs['accuracy'])} | "
            f"{_interval(cs['latency'], 1, 1)} | {_interval(cs['eta_over_capacity'], 1, 3)} | "
            f"{cs['accuracy']['clusters']} |"]


def headline_table(results: dict) -> str:
    """AsyncThink against the baselines on the same (mixed-mode) RL checkpoint, seeds pooled."""
    rows = [row for mode in BASELINE_MODES for row in comparison_row(
        results, f"{mode} rl", f"{ASYNCTHINK} rl", f"AsyncThink minus {mode} (same RL checkpoint)")]
    return "\n".join(HEADER + rows)


def design_table(results: dict) -> str:
    """One mixed-mode checkpoint against one checkpoint per mode (seed 0): the modes compared on each design,
    and each mode on the mixed checkpoint against its own-mode one."""
    own = {ASYNCTHINK: "rl-asyncthink-only", **{mode: "rl-sequential-only" for mode in BASELINE_MODES}}
    rows = [row for mode in BASELINE_MODES for row in comparison_row(
        results, f"{mode} {own[mode]}", f"{ASYNCTHINK} {own[ASYNCTHINK]}",
        f"AsyncThink minus {mode} (one RL checkpoint per mode)", pooled=False)]
    rows += [row for mode in own for row in comparison_row(
        results, f"{mode} {own[mode]}", f"{mode} rl", f"{mode}: mixed checkpoint minus its own-mode one",
        pooled=False)]
    return "\n".join(HEADER + rows) if rows else ""


def _single(results: dict) -> bool:
    return len({r["seed"] for r in results["runs"] if r["checkpoint"] == "rl"}) == 1


def tables(results: dict) -> str:
    return "\n\n".join(t for t in (training_table(results), accuracy_table(results), headline_table(results),
                                    design_table(results)) if t)


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["train", "evaluate", "collect", "table"])
    parser.add_argument("arms", nargs="*", help="train: the arms to run (ARMS)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--evals", type=Path, default=RUNS / "ablation", help="evaluation folders' root")
    parser.add_argument("--out", type=Path, default=REPO / "models" / "tiny-organizer" / "results.json")
    args = parser.parse_args()
    if args.command == "train":
        unknown = sorted(set(args.arms) - set(ARMS))
        if unknown or not args.arms:
            parser.error(f"train needs arms from {sorted(ARMS)}, got {args.arms}")
        for arm in args.arms:
            for seed in args.seeds:
                train(arm, seed)
    elif args.command == "evaluate":
        for (name, seed), model in checkpoints().items():
            evaluate(model, eval_dir(args.evals, name, seed), MODES.get(name, ["asyncthink"]))
    elif args.command == "collect":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(collect(args.evals), indent=1) + "\n")
        plot(args.out.parent)
        print(tables(json.loads(args.out.read_text())))
    else:
        print(tables(json.loads(args.out.read_text())))


if __name__ == "__main__":
    main()

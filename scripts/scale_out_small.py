"""The multi-GPU RL recipe's shape, run small on one CPU machine: two trainer processes, two vLLM servers.

What it does, all on 127.0.0.1:

1. starts two stock vLLM OpenAI servers (``python -m vllm.entrypoints.openai.api_server``,
   ``VLLM_SERVER_DEV_MODE=1`` for weight reload) on ``models/tiny-organizer``, each on a free port, and waits
   for their ``/health`` (bounded);
2. asks each server for a greedy completion of a fixed countdown prompt (the organizer's compact prompt);
3. runs ``torchrun --nproc_per_node 2 -m asyncthink train rl --config configs/rl_countdown_tiny.yaml`` (gloo)
   with the ``openai`` rollout engine on both URLs (load-aware routing), a shared ``weights_dir``, AsyncThink
   mode, 3 steps, a small batch; rank 0 pushes the new weights to both servers after every step;
4. asks both servers again, and checks: the two servers agree (tokens, and logprobs within 1e-4); before
   training they equal transformers' greedy output on the starting model and after it transformers' greedy
   output on the run's ``final`` model (so both servers serve the trained weights); the output changed
   (the greedy tokens, or at least their logprobs; which one is printed);
5. reads the run's ``metrics.jsonl`` and prints status counts per step (checking that they add up to the
   step's episodes, summed over both processes).

Everything goes to ``runs/scale_out_small/<time>/`` (server logs, trainer log, the RL run, ``summary.json``).
Both servers and the trainer run in their own process groups, which are killed at the end whatever happens
(also on Ctrl-C, SIGTERM or a timeout). Exits non-zero when any check fails.

    .venv/bin/python scripts/scale_out_small.py [--steps 3] [--learning-rate 3e-4] [--out runs/scale_out_small/x]

On the 2-core development machine (shared with other jobs) it took about 6 minutes; see README's
*What was tested where*. The learning rate is higher than the tiny recipe's (5e-5) so that three steps move
the greedy output visibly: the point here is the plumbing, not the learning.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from asyncthink.engines.health import wait_healthy

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = REPO / "models" / "tiny-organizer"
CONFIG = REPO / "configs" / "rl_countdown_tiny.yaml"
HOST = "127.0.0.1"
BOOT_TIMEOUT_S = 420
REQUEST_TIMEOUT_S = 120
GREEDY_TOKENS = 48
NUMBERS, TARGET, REQUIRED, CAPACITY = [4, 7, 3], 25, 2, 4  # a fixed held-in-style countdown question


def rollout_urls(urls: list[str]) -> list[str]:
    """The trainer's URLs, the first written the OpenAI way (``.../v1``), the rest as roots: both must work."""
    return [urls[0] + "/v1", *urls[1:]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Group:
    """A subprocess in its own session (process group), killed as a group."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str]) -> None:
        self.name, self.log_path = name, log
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                     start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:  # children left behind in the group (vLLM's engine core) go too
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()

    def tail(self, n: int = 3000) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-n:]


def start_server(name: str, folder: Path) -> tuple[Group, str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL), "--host", HOST,
        "--port", str(port), "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
        "--logprobs-mode", "processed_logprobs", "--enable-prompt-tokens-details", "--enable-prefix-caching",
        "--no-enable-chunked-prefill", "--seed", "0",
    ]
    env = {**os.environ, "VLLM_SERVER_DEV_MODE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return Group(name, cmd, folder / f"{name}.log", env), f"http://{HOST}:{port}"


def prompt_ids(tokenizer) -> list[int]:
    from asyncthink.envs.countdown import question
    from asyncthink.prompts import PromptConfig, organizer_messages, render

    cfg = PromptConfig(style="compact")
    return render(tokenizer, organizer_messages(cfg, question(NUMBERS, TARGET, REQUIRED), "", CAPACITY), cfg)


def server_greedy(url: str, ids: list[int]) -> tuple[list[int], list[float]]:
    body = {"model": str(MODEL), "prompt": ids, "max_tokens": GREEDY_TOKENS, "temperature": 0.0, "logprobs": 0,
            "return_token_ids": True, "skip_special_tokens": False}
    req = urllib.request.Request(f"{url}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as r:
        choice = json.loads(r.read())["choices"][0]
    return [int(t) for t in choice["token_ids"]], [float(x) for x in choice["logprobs"]["token_logprobs"]]


def hf_greedy(model_dir: Path, ids: list[int], n: int) -> list[int]:
    """Transformers' greedy continuation (the reference the servers must match)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=0,
                             eos_token_id=model.config.eos_token_id)
    return out[0, len(ids):].tolist()


def agree(a: tuple[list[int], list[float]], b: tuple[list[int], list[float]]) -> bool:
    return a[0] == b[0] and max((abs(x - y) for x, y in zip(a[1], b[1], strict=True)), default=0.0) < 1e-4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/scale_out_small/<time>)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--train-timeout", type=float, default=1200.0, help="seconds for the torchrun stage")
    args = parser.parse_args()
    folder = (args.out or REPO / "runs" / "scale_out_small" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    rl_out, weights = folder / "rl", folder / "weights"
    weights.mkdir(exist_ok=True)

    def on_term(signum, frame):  # SIGTERM -> the finally below still kills the groups
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    t0 = time.time()
    groups: list[Group] = []
    failures: list[str] = []
    summary: dict = {"folder": str(folder)}
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(MODEL)
        ids = prompt_ids(tokenizer)
        urls = []
        for name in ("server-a", "server-b"):
            server, url = start_server(name, folder)
            groups.append(server)
            urls.append(url)
        deadline = time.time() + BOOT_TIMEOUT_S
        for server, url in zip(groups, urls, strict=True):
            wait_healthy(url, max(0.0, deadline - time.time()), server.proc, server.log_path, name=server.name)
        t_boot = time.time() - t0
        print(f"servers healthy after {t_boot:.0f}s: {urls}", flush=True)
        before = [server_greedy(u, ids) for u in urls]
        reference_before = hf_greedy(MODEL, ids, GREEDY_TOKENS)

        overrides = [
            f"model={MODEL}", f"out={rl_out}", f"max_steps={args.steps}", f"group_size={args.group_size}",
            f"prompts_per_step={args.prompts_per_step}", f"learning_rate={args.learning_rate}",
            "save_every=1000", "progress=false", "tensorboard=false", "cpu=true", "resume=false",
            "runtime.mode=asyncthink", "modes=[]",  # AsyncThink rollouts only, whatever the config mixes
            "engine.kind=openai", f"engine.base_urls={json.dumps(rollout_urls(urls))}",
            f"engine.weights_dir={json.dumps(str(weights))}", "engine.read_timeout_s=300",
            "engine.connect_timeout_s=10",
        ]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", HOST,
               "--master_port", str(free_port()), "-m", "asyncthink", "train", "rl", "--config", str(CONFIG),
               *overrides]
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"}
        (folder / "trainer-command.txt").write_text(" ".join(cmd) + "\n")
        t1 = time.time()
        trainer = Group("trainer", cmd, folder / "trainer.log", env)
        groups.append(trainer)
        try:
            rc = trainer.proc.wait(timeout=args.train_timeout)
        except subprocess.TimeoutExpired:
            rc = None
        t_train = time.time() - t1
        if rc != 0:
            raise RuntimeError(f"trainer {'timed out' if rc is None else f'exited with {rc}'} after "
                               f"{t_train:.0f}s; see {trainer.log_path}\n{trainer.tail()}")
        print(f"training ({args.steps} steps, 2 processes) took {t_train:.0f}s", flush=True)

        after = [server_greedy(u, ids) for u in urls]
        reference_after = hf_greedy(rl_out / "final", ids, GREEDY_TOKENS)
        changed_tokens = after[0][0] != before[0][0]
        max_dlogp = max((abs(x - y) for x, y in zip(after[0][1], before[0][1], strict=False)), default=0.0)
        checks = {
            "servers agree before": agree(before[0], before[1]),
            "servers agree after": agree(after[0], after[1]),
            "before == transformers(start model)": before[0][0] == reference_before,
            "after == transformers(rl/final)": after[0][0] == reference_after,
            "greedy output changed (tokens, or logprobs by > 1e-3)": changed_tokens or max_dlogp > 1e-3,
            "no weights left in weights_dir": not any(weights.iterdir()),
        }
        # the access logs: rollouts reached both servers; each reloaded weights once at start and once per step
        # (rank 0 pushes; a push from every rank would double this)
        served = {}
        for server in groups[:2]:
            text = server.tail(10**9)
            served[server.name] = {"completions": text.count('"POST /v1/completions'),
                                   "reloads": text.count('"POST /collective_rpc')}
        checks["rollouts went to both servers"] = all(v["completions"] > 2 for v in served.values())
        checks[f"each server reloaded weights {args.steps + 1} times (start + every step)"] = all(
            v["reloads"] == args.steps + 1 for v in served.values())
        from asyncthink.training.rl_logging import read_metrics

        rows = read_metrics(rl_out / "metrics.jsonl")
        per_step = []
        for row in rows:
            status = {k.split("/", 1)[1]: int(v) for k, v in row.items() if k.startswith("status/")}
            codes = {k.split("/", 1)[1]: int(v) for k, v in row.items() if k.startswith("format_error/")}
            per_step.append({"step": row["step"], "episodes": int(row["episodes"]), "status": status,
                             "format_error_codes": codes, "reward": row.get("reward"),
                             "score": row.get("score"), "accuracy": row.get("accuracy"), "forks": row.get("forks"),
                             "step_s": row.get("step_s")})
        expected = args.prompts_per_step * args.group_size
        checks[f"{args.steps} steps logged"] = [r["step"] for r in per_step] == list(range(args.steps))
        checks[f"status counts add up to {expected} episodes per step"] = all(
            r["episodes"] == expected and sum(r["status"].values()) == expected for r in per_step)
        # every format_error / budget_exceeded episode carries at least one code; codes are summed over processes
        checks["format error codes cover both processes' failed episodes"] = all(
            sum(r["format_error_codes"].values()) >= r["status"].get("format_error", 0)
            + r["status"].get("budget_exceeded", 0) for r in per_step)

        decode = lambda t: tokenizer.decode(t, skip_special_tokens=False)  # noqa: E731
        print("\nstatus counts per step (both processes):")
        for r in per_step:
            s = "  ".join(f"{k}={v}" for k, v in r["status"].items())
            print(f"  step {r['step']}: {s}  | reward={r['reward']:.3f} score={r['score']:.3f} "
                  f"accuracy={r['accuracy']:.3f} "
                  f"forks={r['forks']:.2f} step_s={r['step_s']:.0f}")
            if r["format_error_codes"]:
                print("          codes: " + ", ".join(f"{k}={v}" for k, v in r["format_error_codes"].items()))
        print("requests per server (incl. the 2 greedy probes): " + ", ".join(
            f"{k}: {v['completions']} completions, {v['reloads']} weight reloads" for k, v in served.items()))
        print(f"\ngreedy before (both servers): {decode(before[0][0])!r}")
        print(f"greedy after  (both servers): {decode(after[0][0])!r}")
        print(f"tokens changed: {changed_tokens}; max |logprob change| on the old tokens' positions: {max_dlogp:.4f}")
        print("\nchecks:")
        for name, ok in checks.items():
            print(f"  [{'ok' if ok else 'FAIL'}] {name}")
            if not ok:
                failures.append(name)
        summary.update({
            "urls": urls, "requests": served, "boot_s": round(t_boot, 1), "train_s": round(t_train, 1),
            "steps": per_step,
            "greedy": {"before": [decode(b[0]) for b in before], "after": [decode(a[0]) for a in after],
                       "tokens_changed": changed_tokens, "max_logprob_change": max_dlogp},
            "checks": checks,
        })
    except BaseException as exc:  # noqa: BLE001 - reported, then the groups are killed below
        failures.append(f"{type(exc).__name__}: {exc}")
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    finally:
        for group in reversed(groups):
            group.stop()
        summary["wall_s"] = round(time.time() - t0, 1)
        summary["failures"] = failures
        (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"\nwall-clock {summary['wall_s']:.0f}s; {'FAILED' if failures else 'all checks passed'}; "
              f"logs and summary in {folder}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

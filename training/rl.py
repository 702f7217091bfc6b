"""``asyncthink train rl``: GRPO over AsyncThink episodes, organizer and worker rows alike.

One step reads as generate, score, advantages, loss, log:

1. generate: G episodes per prompt through the runtime on the rollout engine,
   so training contexts are exactly inference contexts;
2. score: the task's episode reward (accuracy, format penalty, concurrency);
3. advantages: per group of G, std-normalised or mean-centred;
4. loss: every policy token of every row gets its episode's advantage; clipped
   ratio, truncated importance weights, normalised over the whole batch (all
   processes; ``loss_norm``: token mean by default), optional KL to the initial
   model; then weights are synced to the rollout engine;
5. log: console, JSONL, TensorBoard; curves at the end. Beside the outcomes,
   each step logs what tells a healthy update from a broken one: policy
   entropy, the sampler/trainer logprob gap and the importance weights' spread,
   the gradient norm before clipping, KL to the reference (with one) and
   between the policy before and after the step, the share of groups without
   signal, and tokens trained per role.

One run may train on several modes (``RLConfig.modes``, e.g. AsyncThink and sequential thinking, so the
baselines get the same pipeline and compute): the prompt at data position ``p`` is rolled out in
``modes[p % len(modes)]``, its whole group in that mode, each mode on its own executor of the one engine
under one in-flight limit; advantages, loss and update are unchanged, and the log adds per-mode means
(``score_<mode>``, ...).

Several processes (``torchrun --nproc_per_node N -m asyncthink train rl``, or
``accelerate launch``) each roll out their share of the prompts and all-reduce
gradients summed over tokens, so the update is the same as one process on the
whole batch and every rank ends with the same parameters. Checkpoints are
atomic and resumable (``training/checkpoint.py``).
"""

from __future__ import annotations

import asyncio
import copy
import os
import random
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch

from asyncthink.batch import make_items, run_batch
from asyncthink.config_io import save_config
from asyncthink.envs import make_task
from asyncthink.envs.manifest import dataset_manifest
from asyncthink.envs.rewards import RewardBreakdown, episode_reward, trainable
from asyncthink.episode import Episode, Outcome, write_jsonl
from asyncthink.executor import EpisodeExecutor
from asyncthink.modes import Mode
from asyncthink.training.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from asyncthink.training.rl_batch import TrainRow, collate, group_advantages, micro_batches
from asyncthink.training.rl_config import RLConfig
from asyncthink.training.rl_logging import MetricsLogger, episode_stats, mode_stats, plot_curves, signal_stats
from asyncthink.training.rl_loss import (
    LossParts,
    loss_denominator,
    loss_rows,
    policy_loss,
    token_logprobs,
    token_logprobs_and_entropy,
)


class GRPOTrainer:
    """Owns the model, optimizer, rollout engine and data order of one run."""

    def __init__(self, cfg: RLConfig) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import set_seed
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        # A trainer run earlier in this process (SFT then RL in one notebook or test session) leaves accelerate's
        # process-global state with its own precision; drop it so this run's settings apply. The distributed
        # (partial) state is kept: it is the same process group.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.acc = Accelerator(cpu=cfg.cpu or not torch.cuda.is_available(),
                               mixed_precision="bf16" if cfg.bf16 else "no")
        set_seed(cfg.seed)
        self.out = Path(cfg.out)
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        self.model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.float32).to(self.acc.device)
        if cfg.lora.enabled:
            from asyncthink.training.lora import wrap_lora

            self.model = wrap_lora(self.model, cfg.lora, self.tokenizer)
        self.ref = self._reference() if cfg.kl_coef > 0 else None
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad],
                                           lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        warmup = max(1, cfg.warmup_steps)
        # stepped once per RL step (not per optimizer update): warmup_steps counts RL steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: min(1.0, (s + 1) / warmup))
        self.task = make_task(cfg.task, **cfg.task_options)
        self.problems = self.task.dataset(cfg.split, n=cfg.dataset_size, seed=cfg.seed)
        cfg.data = dataset_manifest(cfg.task, cfg.task_options, cfg.split, self.problems)  # -> config.yaml
        self.state = TrainState()
        self.logger = MetricsLogger(cfg.out, cfg.tensorboard, enabled=self.acc.is_main_process)
        self.engine: Any = None
        self.executor: EpisodeExecutor | None = None  # the first mode's (the only one's, with one mode)
        self.executors: dict[Mode, EpisodeExecutor] = {}  # one per mode of ``cfg.rollout_modes``

    # ------------------------------------------------------------ setup

    def _reference(self) -> Any:
        """A frozen copy of the initial policy for the KL term (with LoRA, the adapter stays a branch, unmerged, so
        the reference computes exactly as the policy does and the KL is 0 before the first update)."""
        return copy.deepcopy(self.model).eval().requires_grad_(False)

    def rollout_weights(self) -> dict[str, torch.Tensor]:
        """What the rollout engine must serve: the model's weights, with LoRA the adapter folded into the base."""
        if self.cfg.lora.enabled:
            from asyncthink.training.lora import merged_state_dict

            return merged_state_dict(self.model)
        return self.model.state_dict()

    async def start_engine(self, engine: Any = None) -> None:
        kind = str(self.cfg.engine.kind)
        if engine is not None:  # a caller-built engine (tests, custom backends)
            self.engine = engine
        elif kind == "hf":
            from asyncthink.engines.hf_engine import HFEngine

            # the rollout engine serves this very module: updates are visible at once, no copy
            self.engine = HFEngine(self.model, self.tokenizer, max_batch=self.cfg.engine.max_batch,
                                   max_model_len=self.cfg.engine.max_model_len)
        else:
            from asyncthink.engines import build_engine

            served = self.cfg.engine.model if self.cfg.engine.model not in (None, "", "colocated") else self.cfg.model
            self.engine = await build_engine(replace(self.cfg.engine, model=served))
            await self.sync_weights()
        # one mode: the runtime as configured; several: each mode on a copy of it (modes overrides runtime.mode)
        self.executors = {mode: EpisodeExecutor(self.engine, replace(self.cfg.runtime, mode=mode) if self.cfg.modes
                                                else self.cfg.runtime, self.task)
                          for mode in self.cfg.rollout_modes}
        self.executor = next(iter(self.executors.values()))

    def maybe_resume(self) -> None:
        if not self.cfg.resume:
            return
        path = latest_checkpoint(self.out / "checkpoints")
        if path is not None:
            self.state = load_checkpoint(path, self.model, self.optimizer, self.scheduler)
            self.acc.print(f"resumed from {path} at step {self.state.step}")

    # ------------------------------------------------------------ one step

    def step_problems(self) -> list[dict[str, Any]]:
        """This process's share of the next ``prompts_per_step`` problems; epochs are reshuffled by seed."""
        n, start = len(self.problems), self.state.data_position
        picked = []
        for p in range(start, start + self.cfg.prompts_per_step):
            order = list(range(n))
            random.Random(f"{self.cfg.seed}-epoch-{p // n}").shuffle(order)
            picked.append(self.problems[order[p % n]])
        return picked[self.acc.process_index :: self.acc.num_processes]

    def step_modes(self) -> list[Mode]:
        """The mode of each of ``step_problems``' problems: ``modes[p % len(modes)]`` at data position ``p``,
        strided over processes the same way, so every process agrees on every prompt's mode."""
        modes, start = self.cfg.rollout_modes, self.state.data_position
        share = [modes[p % len(modes)] for p in range(start, start + self.cfg.prompts_per_step)]
        return share[self.acc.process_index :: self.acc.num_processes]

    async def generate(self, problems: list[dict[str, Any]]) -> list[Episode]:
        """``group_size`` episodes per problem, problem after problem; with several modes each problem's group
        runs in its mode (``step_modes``): ``problems`` must be ``step_problems()``."""
        step, rank = self.state.step, self.acc.process_index
        g = self.cfg.group_size
        seed = self.cfg.seed * 7919 + step
        self.model.eval()
        progress = self.cfg.progress and self.acc.is_main_process
        if len(self.executors) < 2:
            items = make_items(problems, samples=g, seed=seed, prefix=f"s{step}-r{rank}-")
            return await run_batch(self.executor, items, self.cfg.max_in_flight, progress=progress,
                                   description=f"rollouts step {step}")
        modes = [mode for mode in self.step_modes() for _ in range(g)]  # one per item
        # the same seeds as one mode; the ids name the mode, so a problem drawn twice in one step, in two
        # modes, still routes each episode to its own mode
        items = [replace(item, episode_id=f"s{step}-r{rank}-{mode}-{item.episode_id}")
                 for item, mode in zip(make_items(problems, samples=g, seed=seed), modes, strict=True)]
        router = _ModeRouter(self.executors, {item.episode_id: mode for item, mode in zip(items, modes, strict=True)})
        episodes = await run_batch(router, items, self.cfg.max_in_flight, progress=progress,
                                   description=f"rollouts step {step}")
        for ep, mode in zip(episodes, modes, strict=True):
            ep.mode = mode  # an episode that raised was recorded under the router's first mode
        return episodes

    def score(self, episodes: list[Episode]) -> list[RewardBreakdown]:
        breakdowns = [episode_reward(ep, self.cfg.rewards) for ep in episodes]
        for ep, b in zip(episodes, breakdowns, strict=True):
            ep.reward = b.total
        return breakdowns

    def advantages(self, episodes: list[Episode], rewards: list[float]) -> list[float | None]:
        """Group advantages over the trainable episodes; None for an infrastructure failure (dropped)."""
        return group_advantages(rewards, self.cfg.group_size, normalize_std=self.cfg.advantage == "std",
                                keep=[trainable(ep) for ep in episodes])

    def check_errors(self, episodes: list[Episode]) -> None:
        """Stop the run when more than ``max_error_fraction`` of the step (all processes) failed.

        Failed: status ``error``, an engine failure or an exception inside the runtime (``Outcome``); neither is
        trained, and the step's log counts each (``status/error``, ``status/runtime_error``).
        """
        failed = [ep for ep in episodes if not trainable(ep)]
        n_failed, n = self._global_sum(len(failed)), self._global_sum(len(episodes))
        if n_failed <= self.cfg.max_error_fraction * n:
            return
        runtime = self._global_sum(sum(ep.outcome == Outcome.RUNTIME_ERROR for ep in failed))
        bug = next((ep for ep in failed if ep.outcome == Outcome.RUNTIME_ERROR), None)
        first = (bug or (failed[0] if failed else None))
        where = f"first: {first.error}" if first else "all on other processes"
        raise RuntimeError(
            f"step {self.state.step}: {n_failed:.0f} of {n:.0f} episodes failed ({n_failed - runtime:.0f} engine "
            f"errors, {runtime:.0f} runtime errors), more than max_error_fraction={self.cfg.max_error_fraction}; "
            f"{where}" + (" (its traceback is in the log above and in the episode's info)" if bug else ""))

    def update(self, episodes: list[Episode], advantages: list[float | None]) -> dict[str, float]:
        """``updates_per_step`` optimizer updates over the step's trained rows; returns loss statistics and the
        step's diagnostics (entropy, sampler/trainer gap, importance weights, grad norm, KL, tokens per role)."""
        rows = self.train_rows(episodes, advantages)
        self.model.train()
        n = self.cfg.updates_per_step
        parts = [[r for r in rows if r.episode % n == k] for k in range(n)]
        # old logprobs from the very micro-batches the loss will use, so the first update's ratio is exactly 1
        old = {key: v for part in parts for key, v in self._old_logprobs(part).items()} if n > 1 else None
        totals: dict[str, float] = {f"trained_tokens/{role}": self._global_sum(sum(
            sum(r.loss_mask) for r in rows if _role(r) == role)) for role in ("organizer", "worker")}
        seen: dict[int, torch.Tensor] = {}  # the pre-step logprobs the loss saw (n == 1), for update_kl
        summed: LossParts | None = None
        for part in parts:
            step_parts, stats = self._optimizer_step(part, old, seen)
            summed = step_parts if summed is None else summed + step_parts
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value / n
        if summed is not None:
            totals.update(self._diagnostics(summed))
        if self.cfg.log_update_kl:  # every process takes part (a process without rows adds 0)
            totals["update_kl"] = self._update_kl(rows, old if old is not None else seen)
        return totals

    def train_rows(self, episodes: list[Episode], advantages: list[float | None]) -> list[TrainRow]:
        """The step's training rows, selected and weighted for ``loss_norm`` (``rl_loss.loss_rows``)."""
        return loss_rows(episodes, advantages, self.cfg.group_size, self.cfg.loss_norm)

    def loss_denominator(self, rows: list[TrainRow]) -> float:
        """What this update's loss sum is divided by, the same on every process (``RLConfig.loss_norm``)."""
        c = self.cfg
        episodes = c.prompts_per_step * c.group_size / c.updates_per_step
        return loss_denominator(rows, c.loss_norm, episodes, c.loss_norm_tokens, self._global_sum)

    def _optimizer_step(self, rows: list[TrainRow], old: dict[int, torch.Tensor] | None,
                        seen: dict[int, torch.Tensor]) -> tuple[LossParts, dict[str, float]]:
        tokens = self._global_sum(sum(sum(r.loss_mask) for r in rows))
        denominator = self.loss_denominator(rows)
        total: LossParts | None = None
        self.optimizer.zero_grad(set_to_none=True)
        for batch_rows in micro_batches(rows, self.cfg.micro_batch_tokens):
            parts, logp = self._loss(batch_rows, old)
            # the normaliser of the whole batch on every process: divide the sum by the global denominator
            (parts.loss / denominator).backward()
            parts.loss = parts.loss.detach()
            total = parts if total is None else total + parts
            if old is None:
                seen.update({id(r): logp[k, : len(r.ids) - 1].detach().clone() for k, r in enumerate(batch_rows)})
        self._all_reduce_grads()
        grad_norm = self._clip_and_step()
        loss = self._global_sum(float(total.loss) if total is not None else 0.0) / denominator
        # grad_norm is the norm before clipping: how large the step wanted to be
        return total or _empty_parts(), {"loss": loss, "grad_norm": grad_norm, "trained_tokens": tokens}

    def _diagnostics(self, parts: LossParts) -> dict[str, float]:
        """The per-token diagnostics of the whole step (every update, every process)."""
        sums = {f.name: self._global_sum(float(getattr(parts, f.name))) for f in fields(parts)
                if f.name not in ("loss", "tis_raw_min", "tis_raw_max")}
        merged = LossParts(loss=torch.zeros(()), **sums, tis_raw_min=self._global_extreme(parts.tis_raw_min, "min"),
                           tis_raw_max=self._global_extreme(parts.tis_raw_max, "max"))
        stats = merged.means()
        if self.ref is None:
            del stats["kl"]  # there is no reference to be far from; update_kl says how far each step moves
        return stats

    def _loss(self, rows: list[TrainRow], old: dict[int, torch.Tensor] | None) -> tuple[LossParts, torch.Tensor]:
        batch = collate(rows, self.tokenizer.pad_token_id or 0).to(self.acc.device)
        temperature = self.cfg.runtime.temperature
        # policy, old and reference logprobs all under the same autocast: with bf16 on, the ratio is exactly 1
        # and the KL exactly 0 before any update
        with self.acc.autocast():
            logp, entropy = token_logprobs_and_entropy(self.model, batch, temperature)
        old_logp = _stack(old, rows, logp) if old is not None else None
        ref_logp = None
        if self.ref is not None:
            with torch.no_grad(), self.acc.autocast():
                ref_logp = token_logprobs(self.ref, batch, temperature)
        c = self.cfg
        parts = policy_loss(logp, batch, old_logp, ref_logp, c.clip_low, c.clip_high, c.tis_cap, c.kl_coef, entropy)
        return parts, logp

    @torch.no_grad()
    def _update_kl(self, rows: list[TrainRow], before: dict[int, torch.Tensor]) -> float:
        """KL(pre-step || post-step) per trained token, k3 on the sampled tokens: how far this step moved the
        policy (one extra forward pass)."""
        after = self._old_logprobs(rows)
        total = count = 0.0
        for r in rows:
            mask = torch.tensor(r.loss_mask, dtype=torch.float32, device=after[id(r)].device)
            delta = after[id(r)] - before[id(r)]
            total += float(((torch.exp(delta) - delta - 1) * mask).sum())
            count += float(mask.sum())
        return self._global_sum(total) / max(self._global_sum(count), 1.0)

    @torch.no_grad()
    def _old_logprobs(self, rows: list[TrainRow]) -> dict[int, torch.Tensor]:
        out = {}
        for batch_rows in micro_batches(rows, self.cfg.micro_batch_tokens):
            batch = collate(batch_rows, self.tokenizer.pad_token_id or 0).to(self.acc.device)
            with self.acc.autocast():
                logp = token_logprobs(self.model, batch, self.cfg.runtime.temperature)
            for k, r in enumerate(batch_rows):
                out[id(r)] = logp[k, : len(r.ids) - 1].clone()
        return out

    def _all_reduce_grads(self) -> None:
        if self.acc.num_processes == 1:
            return
        import torch.distributed as dist

        for p in self.model.parameters():
            if not p.requires_grad:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)

    def _clip_and_step(self) -> float:
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm or float("inf"))
        self.optimizer.step()
        return float(norm)

    def _global_extreme(self, value: float, op: str) -> float:
        if self.acc.num_processes == 1:
            return float(value)
        import torch.distributed as dist

        t = torch.tensor(float(value), device=self.acc.device, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.MAX)
        return float(t)

    def _global_sum(self, value: float) -> float:
        if self.acc.num_processes == 1:
            return float(value)
        t = torch.tensor(float(value), device=self.acc.device, dtype=torch.float64)
        return float(self.acc.reduce(t, reduction="sum"))

    async def sync_weights(self) -> None:
        """Push the new weights to the rollout engine (the colocated engine already shares them)."""
        kind = str(self.cfg.engine.kind)
        if kind == "hf":
            return
        if kind == "vllm" or self.acc.is_main_process:  # HTTP servers are shared: one process pushes
            await self.engine.load_weights(self.rollout_weights())
        self.acc.wait_for_everyone()

    # ------------------------------------------------------------ the loop

    async def train(self, engine: Any = None) -> Path:
        if self.acc.is_main_process:
            save_config(self.cfg, self.out / "config.yaml")
        self.maybe_resume()
        await self.start_engine(engine)
        try:
            while self.state.step < self.cfg.max_steps:
                await self.run_step()
        finally:
            await self.engine.close()
        return self.finish()

    async def run_step(self) -> None:
        t0 = time.perf_counter()
        self._lr_used = self.scheduler.get_last_lr()[0]  # the step's rate (the scheduler moves on before logging)
        episodes = await self.generate(self.step_problems())
        t_rollout = time.perf_counter() - t0
        breakdowns = self.score(episodes)
        advantages = self.advantages(episodes, [b.total for b in breakdowns])
        signal = signal_stats(breakdowns, advantages, self.cfg.group_size, self.cfg.rewards.tau)
        try:
            self.check_errors(episodes)
        except RuntimeError:
            self.log(episodes, signal, t_rollout, time.perf_counter() - t0)  # the failing step is on record
            raise
        loss_stats = self.update(episodes, advantages)
        self.scheduler.step()
        await self.sync_weights()
        self.log(episodes, {**signal, **loss_stats}, t_rollout, time.perf_counter() - t0)
        self.state.step += 1
        self.state.data_position += self.cfg.prompts_per_step
        if self.state.step % self.cfg.save_every == 0 or self.state.step == self.cfg.max_steps:
            self.save(episodes)

    def log(self, episodes: list[Episode], loss_stats: dict[str, float], t_rollout: float, t_step: float) -> None:
        modes = self.cfg.rollout_modes
        stats = episode_stats(episodes, modes)
        per_mode = mode_stats(episodes, modes)  # {score_<mode>: (sum, count), ...}; empty with one mode
        local = {k: v for k, v in stats.items() if "/" not in k and k not in per_mode}
        merged = {k: self._global_sum(v) / self.acc.num_processes for k, v in local.items()}
        # Per-mode means: modes are strided over processes with the prompts, so a process may have no episode of
        # a mode this step. Every process still has every configured mode's key (the all-reduces line up), and
        # the mean is the global sum over the global count, so a process without such episodes adds nothing
        # instead of a 0 counted as a value.
        merged.update({k: self._global_sum(total) / max(self._global_sum(n), 1.0)
                       for k, (total, n) in per_mode.items()})
        merged["generated_tokens"] = self._global_sum(stats["generated_tokens"])
        # counts are summed over processes, over the union of every process's keys (format error codes differ)
        keys = sorted(k for k in stats if "/" in k)
        if self.acc.num_processes > 1:
            from accelerate.utils import gather_object

            keys = sorted(set(gather_object(keys)))
        counts = {k: self._global_sum(stats.get(k, 0.0)) for k in keys}
        self.logger.log(self.state.step, {
            **merged, **counts, **loss_stats, "lr": self._lr_used,
            "tokens_per_s": merged["generated_tokens"] / max(t_rollout, 1e-9), "rollout_s": t_rollout,
            "step_s": t_step, "episodes": float(self._global_sum(len(episodes))),
        })

    def save(self, episodes: list[Episode]) -> None:
        if self.acc.is_main_process:
            # The checkpoint is the commit point, so the step's rollouts are complete on disk before it: a run
            # killed in between redoes the step and writes the same file again.
            rollouts = self.out / "rollouts" / f"step-{self.state.step:06d}.jsonl"
            rollouts.parent.mkdir(parents=True, exist_ok=True)
            write_jsonl(rollouts.with_suffix(".tmp"), episodes)
            os.replace(rollouts.with_suffix(".tmp"), rollouts)
            save_checkpoint(self.out / "checkpoints", self.state, self.model, self.optimizer, self.scheduler,
                            self.cfg.keep_checkpoints)
        self.acc.wait_for_everyone()

    def finish(self) -> Path:
        final = self.out / "final"
        if self.acc.is_main_process:
            if self.cfg.lora.enabled:  # the adapter (what ships) beside the merged model (what engines load)
                from asyncthink.training.lora import save_lora_run

                save_lora_run(self.model, self.tokenizer, final)
            else:
                self.model.save_pretrained(final)
                self.tokenizer.save_pretrained(final)
            plot_curves(self.out / "metrics.jsonl", self.out / "curves.png", title=f"GRPO on {self.cfg.task}")
        self.logger.close()
        self.acc.wait_for_everyone()
        return final


class _ModeRouter:
    """Runs each episode on its mode's executor, standing in for an ``EpisodeExecutor`` in ``run_batch``, so one
    batch serves every mode of a step: one in-flight limit shared by all, one progress bar (rich allows one live
    display at a time), results in item order. ``config`` and ``task`` are the first executor's; ``run_batch``
    reads them only to record an episode that raised (``generate`` then sets its mode)."""

    def __init__(self, executors: dict[Mode, EpisodeExecutor], mode_of: dict[str, Mode]) -> None:
        self.executors, self.mode_of = executors, mode_of
        first = next(iter(executors.values()))
        self.config, self.task = first.config, first.task

    async def run(self, problem: dict[str, Any], seed: int | None = 0, episode_id: str = "0",
                  on_event: Any = None) -> Episode:
        executor = self.executors[self.mode_of[episode_id]]
        return await executor.run(problem, seed=seed, episode_id=episode_id, on_event=on_event)


def _role(row: TrainRow) -> str:
    return "organizer" if "." not in row.row_id else "worker"  # workers are "0.1", "0.1.2", ...


def _empty_parts() -> LossParts:
    return LossParts(loss=torch.zeros(()), tokens=0.0, clipped=0.0, kl=0.0, tis_weight=0.0, ratio=0.0)


def _stack(old: dict[int, torch.Tensor], rows: list[TrainRow], like: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(like)
    for k, r in enumerate(rows):
        out[k, : len(r.ids) - 1] = old[id(r)]
    return out


def train_rl(cfg: RLConfig) -> Path:
    """Run (or resume) an RL run; returns the final model folder."""
    return asyncio.run(GRPOTrainer(cfg).train())

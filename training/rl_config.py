"""The RL run config: model, task, rollout engine, episode settings, rewards and GRPO hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from asyncthink.engines import EngineConfig
from asyncthink.envs.rewards import RewardConfig
from asyncthink.modes import untrainable
from asyncthink.runtime_config import Mode, RuntimeConfig
from asyncthink.training.lora import LoRAOptions

LOSS_NORMS = {
    "token_mean": "the token sum over the number of trained tokens in the batch (every kept group counts, "
                  "a group without signal too)",
    "signal_token_mean": "as token_mean over the groups with signal only: rows of groups whose advantages are "
                         "all 0 are left out of the loss and of its denominator",
    "row_mean": "each row's token mean, averaged over the batch's rows (every row weighs the same, whatever "
                "its length)",
    "constant": "the token sum over a fixed count, episodes per update x loss_norm_tokens (Dr. GRPO): a "
                "token's weight never depends on the batch",
}
"""The loss normalisers (``RLConfig.loss_norm``) and what each divides by."""


@dataclass
class RLConfig:
    """One GRPO run over AsyncThink episodes."""

    model: str = ""
    """Model folder or name to start from (usually a cold-start SFT checkpoint)."""
    out: str = "runs/rl"
    """Output folder: checkpoints, metrics, curves, final model, resolved config."""
    task: str = "countdown"
    """Task name (``countdown``, ``math``, ``sudoku``, or any registered task)."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """Options of ``make_task(task, ...)``."""
    split: str = "train"
    """Split the training problems come from."""
    dataset_size: int = 1000
    """Problems in the training pool (cycled, reshuffled every epoch)."""
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(kind="hf", model="colocated"))
    """Rollout engine. ``hf``: the trainer's own module (no weight copy); ``vllm``: in-process vLLM, synced
    after each update; ``openai``: vLLM servers, synced through a shared ``weights_dir``."""
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    """Mode, capacity, budgets and sampling of the rollout episodes (as at inference)."""
    modes: list[str] = field(default_factory=list)
    """The modes of the rollouts, in equal shares of each step's prompts (the prompt at data position ``p`` is
    rolled out in ``modes[p % len(modes)]``); a prompt's whole group shares one mode, so advantages compare like
    with like. Empty means ``runtime.mode`` alone (which ``modes`` otherwise overrides). E.g.
    ``[asyncthink, sequential]`` trains one checkpoint for all three modes of the evaluation, with the same
    pipeline and compute (parallel thinking votes over sequential traces, so it cannot be trained itself).
    ``prompts_per_step`` must be a multiple of its length."""
    lora: LoRAOptions = field(default_factory=LoRAOptions)
    """Train a LoRA adapter instead of every weight (``lora.enabled``), a fresh one or ``lora.adapter`` continued
    (an SFT run's ``out/adapter``, over ``model`` = that adapter's base). The rollout engine serves base +
    adapter merged; ``out/final`` holds the merged model and ``out/final/adapter`` the adapter. Tags must be text
    (or their rows left untrained): trainable tag tokens are refused."""
    rewards: RewardConfig = field(default_factory=RewardConfig)
    """Episode reward: accuracy, format penalty, concurrency term."""
    group_size: int = 8
    """Episodes per prompt (G)."""
    prompts_per_step: int = 4
    """Prompts per optimizer step, over all processes."""
    max_steps: int = 100
    """RL steps."""
    learning_rate: float = 1e-5
    """AdamW learning rate (constant after warmup)."""
    warmup_steps: int = 0
    """Linear warmup, in RL steps (whatever ``updates_per_step``): step s trains at ``min(1, (s + 1) / warmup)``
    of the learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping; 0 disables."""
    updates_per_step: int = 1
    """Optimizer updates per rollout batch (minibatches); with more than 1 the clip matters."""
    clip_low: float = 0.2
    """Ratio clip below: ``1 - clip_low``."""
    clip_high: float = 0.28
    """Ratio clip above: ``1 + clip_high``."""
    tis_cap: float = 2.0
    """Truncated importance weight cap for engine/trainer mismatch; 0 disables the correction."""
    kl_coef: float = 0.0
    """Weight of the k3 KL to the initial model; 0 skips the reference model."""
    advantage: str = "std"
    """``std``: (R - mean) / (std + eps) per group; ``mean``: R - mean (no std normalisation)."""
    loss_norm: str = "token_mean"
    """What the batch's summed token losses are divided by (``LOSS_NORMS`` above). ``token_mean``:
    the trained tokens of every kept group, a group without signal (all advantages 0) included, so the share of
    such groups shrinks the step; ``signal_token_mean``: the same over the groups with signal only (the others
    leave the loss, their KL term too), so two ablation arms that differ in how many groups carry signal still
    give each signal token the same weight; ``row_mean``: each row's token mean, averaged over rows (short
    rows weigh as much as long ones); ``constant``: episodes per update x ``loss_norm_tokens`` (Dr. GRPO), a
    token's weight fixed whatever the batch."""
    loss_norm_tokens: int = 0
    """The per-episode token count of ``loss_norm: constant`` (about the trained tokens of a typical episode
    keeps the step size of ``token_mean``); unused otherwise, and required > 0 with it."""
    log_update_kl: bool = False
    """Log ``update_kl``, KL(policy before the step || after) per trained token: how far one step moves the
    policy. Off by default: it costs one extra forward pass over the step's rows (about a third of an update);
    turn it on to diagnose a run."""
    max_error_fraction: float = 0.1
    """Stop the run when more than this share of a step's episodes (all processes) fail for a reason that is
    not the policy's: status ``error``, an engine failure (an engine error, or a request the engine ended with
    ``abort`` or ``error``) or an exception inside the runtime (counted apart as ``status/runtime_error``).
    Such episodes are never trained (their group is renormalised without them); this bounds how much of a
    step may go missing. In [0, 1]; 0 stops at the first failure, 1 never stops."""
    micro_batch_tokens: int = 16384
    """Padded tokens per forward/backward micro-batch (memory bound)."""
    max_in_flight: int = 64
    """Episodes generated concurrently per process."""
    save_every: int = 10
    """Checkpoint every this many steps (and at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk."""
    resume: bool = True
    """Continue from the latest checkpoint in ``out`` if there is one."""
    seed: int = 0
    """Seed for data order, rollouts and initialisation."""
    cpu: bool = False
    """Force the CPU (accelerate ``cpu=True``)."""
    bf16: bool = False
    """Train in bfloat16 mixed precision (GPU)."""
    tensorboard: bool = True
    """Also log to TensorBoard when it is installed."""
    progress: bool = True
    """Show progress bars."""
    data: dict[str, Any] = field(default_factory=dict)
    """Written by the run into its resolved config, not read: the training problems' size, source(s) and
    SHA-256 (``envs.manifest.dataset_manifest``), so a result says what it was trained on."""

    @property
    def rollout_modes(self) -> list[Mode]:
        """The modes this run's rollouts are in: ``modes``, or ``[runtime.mode]`` when it is empty."""
        return [Mode(m) for m in self.modes] or [Mode(self.runtime.mode)]

    def __post_init__(self) -> None:
        self.runtime.mode = Mode(self.runtime.mode)
        self._check_modes()
        rt = self.runtime
        checks = [
            (bool(self.model), f"RL needs a model, got {self.model!r}"),
            (self.group_size >= 2, f"group_size must be >= 2 (advantages are relative), got {self.group_size}"),
            (self.prompts_per_step >= 1, f"prompts_per_step must be >= 1, got {self.prompts_per_step}"),
            (self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (self.advantage in ("std", "mean"), f"advantage must be 'std' or 'mean', got {self.advantage!r}"),
            (self.loss_norm in LOSS_NORMS, f"loss_norm must be one of {sorted(LOSS_NORMS)}, got {self.loss_norm!r}"),
            (self.loss_norm != "constant" or self.loss_norm_tokens > 0,
             f"loss_norm=constant needs loss_norm_tokens > 0, got {self.loss_norm_tokens}"),
            (self.loss_norm_tokens >= 0, f"loss_norm_tokens must be >= 0, got {self.loss_norm_tokens}"),
            (rt.temperature > 0, f"RL samples: runtime.temperature must be > 0, got {rt.temperature}"),
            (rt.top_p == 1.0 and rt.top_k == 0,
             f"RL computes logprobs with temperature only: need top_p=1, top_k=0, got {rt.top_p}, {rt.top_k}"),
            (bool(self.modes) or rt.mode.trains,
             "RL trains asyncthink or sequential episodes, not parallel (voted) ones"),
            (self.updates_per_step >= 1, f"updates_per_step must be >= 1, got {self.updates_per_step}"),
            (self.save_every >= 1, f"save_every must be >= 1, got {self.save_every}"),
            (0 <= self.clip_low < 1 and self.clip_high >= 0, f"bad clip range {self.clip_low}, {self.clip_high}"),
            (0 <= self.max_error_fraction <= 1, f"max_error_fraction must be in [0, 1], got {self.max_error_fraction}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.lora.enabled or not self.lora.adapter,
             f"lora.adapter={self.lora.adapter!r} is set but lora.enabled is false: enable LoRA to continue it"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if any(m.spec.forks for m in self.rollout_modes):
            self.rewards.check_capacity(rt.capacity)

    def _check_modes(self) -> None:
        """``modes``: trainable, distinct, dividing ``prompts_per_step``; normalised to ``Mode``."""
        names = [str(m) for m in self.modes]
        bad = untrainable(names)
        repeated = sorted({m for m in names if names.count(m) > 1})
        checks = [
            (not bad, f"modes must be asyncthink and/or sequential (parallel votes over sequential traces: train "
                      f"sequential), got {bad} in modes={names}"),
            (not repeated, f"modes must not repeat, got {repeated} more than once in modes={names}"),
            (not names or self.prompts_per_step % len(names) == 0,
             f"prompts_per_step must be a multiple of len(modes)={len(names)} (equal shares), got "
             f"prompts_per_step={self.prompts_per_step} for modes={names}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        self.modes = [Mode(m) for m in names]
        for mode in self.modes:  # each mode's runtime is valid (e.g. a forking mode needs capacity >= 2)
            replace(self.runtime, mode=mode)

"""Prompts for the organizer, its workers and the baselines, in one place.

Every prompt is a list of chat messages rendered with the model's chat
template (or a plain fallback when it has none) into token ids. The same
functions build training contexts (SFT, RL) and inference contexts, so they
match token for token. ``PromptConfig.version`` is stored in every episode.

Two styles: ``full`` explains the protocol in words (for pretrained models);
``compact`` states it in a few tokens (for tiny models trained from scratch,
where every prompt token costs training time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asyncthink.config_io import require
from asyncthink.piece_encoder import encoder_for

PROMPT_VERSION = "1"

ORGANIZER_FULL = """You are the organizer of a team of workers that think in parallel with you.
Think step by step. When a piece of the work can be done on its own, fork a worker:
<FORK-i>a self-contained sub-query</FORK-i>
with i = 1, 2, 3, ... (never reuse an index). The worker starts at once and you keep thinking.
At most {workers} workers can be forked and not yet joined at any time.
When you need a worker's result, write <JOIN-i>. Its returned text then appears, followed by </JOIN-i>.
Join every worker you fork. Workers see only their sub-query.
Finish with the final answer inside <ANSWER>...</ANSWER>."""

WORKER_FULL = """You are a worker. Solve the sub-query below on your own, thinking step by step.
End with a short takeaway for the organizer inside <RETURN>...</RETURN>."""

WORKER_CAN_FORK = """You may fork your own workers with <FORK-i>sub-query</FORK-i> and join them with <JOIN-i>,
at most {workers} at a time, joining each before you return."""

SEQUENTIAL_FULL = """Think step by step, then give the final answer inside <ANSWER>...</ANSWER>."""

COMPACT = {
    "organizer": "organizer capacity={capacity}",
    "worker": "worker",
    "worker_can_fork": "worker capacity={capacity}",
    "sequential": "sequential",
}


@dataclass
class PromptConfig:
    """How prompts are written and rendered."""

    style: str = "full"
    """``full`` (protocol explained in words) or ``compact`` (a few tokens; for tiny models)."""
    worker_sees_question: bool = False
    """Show workers the original question as context, not only their sub-query."""
    use_chat_template: bool = True
    """Render with the tokenizer's chat template when it has one."""
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra template variables, e.g. ``{"enable_thinking": false}`` for Qwen3."""

    def __post_init__(self) -> None:
        require(
            (self.style in ("full", "compact"), f"prompt style must be 'full' or 'compact', got {self.style!r}"),
        )

    @property
    def version(self) -> str:
        return f"{PROMPT_VERSION}-{self.style}{'-q' if self.worker_sees_question else ''}"


def organizer_messages(cfg: PromptConfig, question: str, instruction: str, capacity: int) -> list[dict[str, str]]:
    if cfg.style == "compact":
        return [{"role": "system", "content": COMPACT["organizer"].format(capacity=capacity)},
                {"role": "user", "content": question}]
    system = ORGANIZER_FULL.format(workers=capacity - 1)
    return [{"role": "system", "content": system}, {"role": "user", "content": _join(instruction, question)}]


def worker_messages(
    cfg: PromptConfig,
    subquery: str,
    question: str | None = None,
    instruction: str = "",
    can_fork: bool = False,
    capacity: int = 1,
) -> list[dict[str, str]]:
    context = f"Original question (context only):\n{question}" if cfg.worker_sees_question and question else ""
    if cfg.style == "compact":
        system = COMPACT["worker_can_fork" if can_fork else "worker"].format(capacity=capacity)
        return [{"role": "system", "content": system}, {"role": "user", "content": _join(context, subquery)}]
    system = WORKER_FULL + ("\n" + WORKER_CAN_FORK.format(workers=capacity - 1) if can_fork else "")
    return [{"role": "system", "content": system}, {"role": "user", "content": _join(instruction, context, subquery)}]


def sequential_messages(cfg: PromptConfig, question: str, instruction: str) -> list[dict[str, str]]:
    if cfg.style == "compact":
        return [{"role": "system", "content": COMPACT["sequential"]}, {"role": "user", "content": question}]
    return [{"role": "system", "content": SEQUENTIAL_FULL}, {"role": "user", "content": _join(instruction, question)}]


def render(tokenizer: Any, messages: list[dict[str, str]], cfg: PromptConfig | None = None) -> list[int]:
    """Token ids of ``messages`` followed by the assistant's turn opening."""
    cfg = cfg or PromptConfig()
    if cfg.use_chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **cfg.chat_template_kwargs
        )
    else:
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages) + "Assistant:"
    return encoder_for(tokenizer).encode(text)  # the shared system text is encoded once, not per episode


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)

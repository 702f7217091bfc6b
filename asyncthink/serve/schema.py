"""Request validation: an OpenAI chat or completions body becomes one ``EpisodeRequest``, or a 4xx ``ApiError``.

The question of a chat request is the last message, which must come from the
user. System (and ``developer``) messages are kept as an instruction placed
before the question in the organizer's user turn, the way a task's
instruction is; the organizer's own system prompt stays the protocol prompt
the policy was trained with. Earlier user and assistant turns are ignored: an
episode answers one question. A completions request's ``prompt`` is the
question (one string; token-id prompts are refused).

``max_tokens`` (or ``max_completion_tokens``) is the organizer's token budget;
the other budgets and the mode come from the extra ``asyncthink`` object.
Fields that would change the answer in ways the runtime cannot honour
(``n > 1``, ``stop``, ``logprobs``, ``echo``, ``best_of > 1``, tools) are
refused, not ignored; unknown fields are ignored, as OpenAI servers do.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from asyncthink.protocol import PoolPolicy
from asyncthink.runtime_config import Mode, RuntimeConfig
from asyncthink.serve.config import ServeConfig
from asyncthink.serve.errors import ApiError, invalid


class ApiKind(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"


@dataclass(frozen=True)
class EpisodeRequest:
    """A validated request: one question, the episode's settings, and how to answer."""

    kind: ApiKind
    model: str
    question: str
    runtime: RuntimeConfig
    runtime_key: str
    """Equal for requests with equal settings: the server reuses one executor for them."""
    seed: int | None
    stream: bool
    include_usage: bool
    stream_workers: bool


EXTRA_KEYS = ("mode", "capacity", "pool_policy", "max_worker_tokens", "max_forks", "max_depth",
              "parallel_traces", "wall_time_s", "stream_workers")
_ROLES = ("system", "developer", "user", "assistant", "tool")
_INSTRUCTION_ROLES = ("system", "developer")
# key: (accepted values, why); anything else is a 400 rather than a silently different answer
_UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "n": ((None, 1), "one episode answers one request, so 'n' must be 1"),
    "best_of": ((None, 1), "'best_of' must be 1; use asyncthink.mode='parallel' for voting"),
    "stop": ((None, [], ""), "stop sequences are not supported: the protocol decides where rows stop"),
    "echo": ((None, False), "'echo' is not supported"),
    "suffix": ((None, ""), "'suffix' is not supported"),
    "logprobs": ((None, False, 0), "logprobs are not returned by this server"),
    "top_logprobs": ((None, 0), "logprobs are not returned by this server"),
    "tools": ((None, []), "tools are not supported"),
    "functions": ((None, []), "functions are not supported"),
}


def decode_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or 400."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", "invalid_json") from None
    except RecursionError:
        raise ApiError(400, "the request body nests too deeply", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}", "invalid_json")
    return body


class RequestParser:
    """Validates bodies against the served model, the server's defaults and limits, and the model's context."""

    def __init__(self, model_name: str, config: ServeConfig, max_model_len: int) -> None:
        self.model_name, self.config = model_name, config
        limit = config.limits.max_tokens
        self.max_tokens = min(limit, max_model_len - 1) if max_model_len > 1 else limit  # leave room for a prompt

    def parse(self, kind: ApiKind, body: dict[str, Any]) -> EpisodeRequest:
        model = self._model(body)
        question = chat_question(body) if kind == ApiKind.CHAT else completion_question(body)
        _check_unicode(question, "messages" if kind == ApiKind.CHAT else "prompt")
        _refuse_unsupported(body)
        extra = _object(body, "asyncthink")
        unknown = sorted(set(extra) - set(EXTRA_KEYS))
        if unknown:
            raise invalid("asyncthink", f"unknown asyncthink field(s) {unknown}; known: {sorted(EXTRA_KEYS)}")
        stream = _bool(body, "stream", False)
        options = _object(body, "stream_options")
        runtime, key = self._runtime(body, extra)
        return EpisodeRequest(
            kind=kind, model=model, question=question, runtime=runtime, runtime_key=key,
            seed=_int(body, "seed", -(2**63), 2**64 - 1), stream=stream,
            include_usage=_bool(options, "include_usage", False, "stream_options."),
            stream_workers=_bool(extra, "stream_workers", False, "asyncthink."),
        )

    def _model(self, body: dict[str, Any]) -> str:
        model = body.get("model")
        if model is None:
            return self.model_name  # optional, as in vLLM's server
        if not isinstance(model, str):
            raise invalid("model", f"'model' must be a string, got {_show(model)}")
        if model != self.model_name:
            raise ApiError(404, f"The model {model!r} does not exist; this server serves {self.model_name!r}",
                           "model_not_found", "model")
        return model

    def _runtime(self, body: dict[str, Any], extra: dict[str, Any]) -> tuple[RuntimeConfig, str]:
        defaults = self.config.runtime
        changes = _sampling(body) | self._budgets(body, extra)
        try:
            return dataclasses.replace(defaults, **changes), repr(sorted(changes.items()))
        except ValueError as exc:  # a combination RuntimeConfig rejects, e.g. capacity 1 in asyncthink mode
            raise ApiError(400, str(exc), "invalid_value", "asyncthink") from None

    def _budgets(self, body: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        lim, out = self.config.limits, {}
        max_tokens = _int(body, "max_completion_tokens", 1, self.max_tokens)
        max_tokens = max_tokens if max_tokens is not None else _int(body, "max_tokens", 1, self.max_tokens)
        if max_tokens is not None:
            out["max_organizer_tokens"] = max_tokens
        ranges = {"capacity": (2, lim.max_capacity), "max_worker_tokens": (1, lim.max_worker_tokens),
                  "max_forks": (0, lim.max_forks), "max_depth": (0, lim.max_depth),
                  "parallel_traces": (1, lim.max_parallel_traces)}
        for key, (lo, hi) in ranges.items():
            value = _int(extra, key, lo, hi, "asyncthink.")
            if value is not None:
                out[key] = value
        out |= _choices(extra)
        out["wall_time_s"] = self._wall_time(extra)
        return out

    def _wall_time(self, extra: dict[str, Any]) -> float:
        limit = self.config.limits.max_wall_time_s
        asked = _number(extra, "wall_time_s", 1e-3, limit, "asyncthink.")
        default = self.config.runtime.wall_time_s
        return min(limit, asked if asked is not None else default if default is not None else limit)


def chat_question(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", f"'messages' must be a non-empty array, got {_show(messages)}")
    texts = [(_role(m, k), _content(m, k)) for k, m in enumerate(messages)]
    role, question = texts[-1]
    if role != "user":
        raise invalid("messages", f"the last message must come from the user, got role {role!r}")
    instructions = [text for role, text in texts if role in _INSTRUCTION_ROLES and text]
    return "\n\n".join([*instructions, question])


def _role(message: Any, k: int) -> str:
    if not isinstance(message, dict):
        raise invalid(f"messages[{k}]", f"messages[{k}] must be an object, got {_show(message)}")
    role = message.get("role")
    if role not in _ROLES:
        raise invalid(f"messages[{k}].role", f"messages[{k}].role must be one of {list(_ROLES)}, got {_show(role)}")
    return role


def _content(message: dict[str, Any], k: int) -> str:
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise invalid(f"messages[{k}].content",
                  f"messages[{k}].content must be a string or text parts, got {_show(content)}")


def completion_question(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid("prompt", f"'prompt' must be one string (token ids and batches are not supported), "
                                f"got {_show(prompt)}")
    return prompt


def _check_unicode(text: str, param: str) -> None:
    """JSON may carry lone surrogates (``"\\ud800"``), which no tokenizer can encode: a 400, not a 500."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise invalid(param, f"'{param}' holds text that is not valid Unicode ({exc.reason} at {exc.start})") from None


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for key, (accepted, why) in _UNSUPPORTED.items():
        if key in body and not any(body[key] == a and type(body[key]) is type(a) for a in accepted):
            raise invalid(key, f"{why}; got {key}={_show(body[key])}")


def _sampling(body: dict[str, Any]) -> dict[str, Any]:
    out = {}
    temperature = _number(body, "temperature", 0.0, 2.0)
    if temperature is not None:
        out["temperature"] = temperature
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p == 0:
        raise invalid("top_p", "'top_p' must be in (0, 1], got 0")
    if top_p is not None:
        out["top_p"] = top_p
    return out


def _choices(extra: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, enum in (("mode", Mode), ("pool_policy", PoolPolicy)):
        value = extra.get(key)
        if value is None:
            continue
        if value not in [m.value for m in enum]:
            raise invalid(f"asyncthink.{key}",
                          f"asyncthink.{key} must be one of {[m.value for m in enum]}, got {_show(value)}")
        out[key] = enum(value)
    return out


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(key, f"'{key}' must be an object, got {_show(value)}")
    return value


def _bool(body: dict[str, Any], key: str, default: bool, prefix: str = "") -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(prefix + key, f"'{prefix}{key}' must be a boolean, got {_show(value)}")
    return value


def _int(body: dict[str, Any], key: str, lo: int, hi: int, prefix: str = "") -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(prefix + key, f"'{prefix}{key}' must be an integer, got {_show(value)}")
    if not lo <= value <= hi:
        raise invalid(prefix + key, f"'{prefix}{key}' must be between {lo} and {hi}, got {value}")
    return value


def _number(body: dict[str, Any], key: str, lo: float, hi: float, prefix: str = "") -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(prefix + key, f"'{prefix}{key}' must be a number, got {_show(value)}")
    if not lo <= value <= hi:  # also refuses NaN
        raise invalid(prefix + key, f"'{prefix}{key}' must be between {lo:g} and {hi:g}, got {value}")
    return float(value)


def _show(value: Any) -> str:
    """A value as the client sent it, cut short: errors quote what they refuse."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."

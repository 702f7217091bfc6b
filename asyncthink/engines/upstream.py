"""Upstream OpenAI-compatible servers: base URLs as users write them, and the check each gets at start-up.

A base URL may be written as the server root (``http://host:8000``) or, as the
OpenAI client and most tools take it, ending in ``/v1`` (``http://host:8000/v1/``);
both mean the root, since the engine adds ``/v1/completions`` and ``/health``
itself. ``check_upstream`` asks one server, once, what the engine will need:
that it answers, that ``/v1/models`` lists the model, and that a token-id
prompt comes back with token ids and logprobs. A server that is down is a
warning (it may come up later; ``/health`` says why meanwhile); a server that
answers wrongly (404 on the API paths, another model, no token ids) is a
configuration error that stops start-up with the URL tried and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import aiohttp

API_SUFFIX = "/v1"


class UpstreamProblem(StrEnum):
    """What the start-up check found wrong with one upstream server."""

    UNREACHABLE = "unreachable"  # no connection, a timeout or a 5xx: may come up later
    NOT_FOUND = "not_found"  # 404 on the API paths: the URL points at no OpenAI-compatible server
    UNAUTHORIZED = "unauthorized"  # 401/403: the API key is missing or wrong
    MODEL_MISSING = "model_missing"  # /v1/models does not list the model asked for
    NO_TOKEN_IDS = "no_token_ids"  # token-id prompts refused, or no token ids returned
    NO_LOGPROBS = "no_logprobs"  # generated tokens come without their logprobs
    BAD_ANSWER = "bad_answer"  # any other answer the engine cannot use


FATAL = frozenset(UpstreamProblem) - {UpstreamProblem.UNREACHABLE}


class UpstreamConfigError(ValueError):
    """An upstream server answers, but not as the engine needs: start-up stops with this message."""


@dataclass
class UpstreamCheck:
    """What one upstream server said at start-up."""

    url: str
    """The server root that was checked."""
    problem: UpstreamProblem | None = None
    """None when the server can serve the engine."""
    detail: str = ""
    """One line: what was tried and what came back (and the fix, for a configuration error)."""
    models: list[str] = field(default_factory=list)
    """The model names ``/v1/models`` listed."""
    max_model_len: int = 0
    """The served model's context length, when the server says it."""

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def fatal(self) -> bool:
        return self.problem in FATAL


def normalize_base_url(url: str) -> str:
    """The server root for a base URL written either way: ``http://h:8000``, ``http://h:8000/v1`` or ``.../v1/``.

    Only a last ``/v1`` of the path goes (a host named ``v1`` stays); a path prefix before it, as behind a
    proxy, stays."""
    parts = urlsplit(str(url).strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"a base URL must look like http://host:port or http://host:port/v1, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"a base URL takes no query or fragment, got {url!r}")
    path = parts.path.rstrip("/")
    path = path[: -len(API_SUFFIX)] if path.endswith(API_SUFFIX) else path
    return f"{parts.scheme}://{parts.netloc}{path}"


async def check_upstream(
    session: aiohttp.ClientSession, url: str, model: str | None, probe_ids: list[int], timeout_s: float
) -> UpstreamCheck:
    """Check one server root: reachable, serving ``model`` (any, if None), answering a token-id prompt properly."""
    check = UpstreamCheck(url)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        await _check_models(session, check, model, timeout)
        if check.ok:
            await _check_completion(session, check, model or check.models[0], probe_ids, timeout)
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        check.problem, check.detail = UpstreamProblem.UNREACHABLE, f"{url}: {_reason(exc, timeout_s)}"
    except (ValueError, TypeError) as exc:  # a body that is no text, a context length that is no number
        check.problem, check.detail = UpstreamProblem.BAD_ANSWER, f"{url}: unreadable answer: {exc!r}"
    return check


async def _check_models(
    session: aiohttp.ClientSession, check: UpstreamCheck, model: str | None, timeout: aiohttp.ClientTimeout
) -> None:
    endpoint = f"{check.url}/v1/models"
    async with session.get(endpoint, timeout=timeout) as resp:
        text = await resp.text()
        if _refused(check, "GET", endpoint, resp.status, text):
            return
    cards = [c for c in _field(_json(text), "data", []) if isinstance(c, dict)]
    if not cards:
        check.problem = UpstreamProblem.BAD_ANSWER
        check.detail = f"GET {endpoint} listed no models: {text[:200]!r}"
        return
    check.models = [str(card.get("id", "")) for card in cards]
    if model is not None and model not in check.models:
        check.problem = UpstreamProblem.MODEL_MISSING
        check.detail = (f"GET {endpoint} lists {check.models}, not {model!r}: name one of those as the model "
                        f"(the server's --served-model-name), or leave the model unset to take the first")
        return
    card = cards[check.models.index(model)] if model is not None else cards[0]
    check.max_model_len = int(card.get("max_model_len") or 0)


async def _check_completion(
    session: aiohttp.ClientSession, check: UpstreamCheck, model: str, probe_ids: list[int],
    timeout: aiohttp.ClientTimeout,
) -> None:
    endpoint = f"{check.url}/v1/completions"
    body = {"model": model, "prompt": probe_ids, "max_tokens": 1, "temperature": 0.0, "logprobs": 0,
            "return_token_ids": True, "skip_special_tokens": False}
    async with session.post(endpoint, json=body, timeout=timeout) as resp:
        text = await resp.text()
        if _refused(check, "POST", endpoint, resp.status, text):
            return
    choices = _field(_json(text), "choices", [])
    choice = choices[0] if isinstance(choices, list) and choices else {}
    ids = token_ids_in(choice)
    if not ids:
        check.problem = UpstreamProblem.NO_TOKEN_IDS
        check.detail = (f"POST {endpoint} returned no token ids for a token-id prompt: asyncthink needs a server "
                        f"that returns them (vLLM's return_token_ids)")
        return
    logprobs = _field(_field(choice, "logprobs", {}), "token_logprobs", None)
    if not isinstance(logprobs, list) or len(logprobs) != len(ids) or any(x is None for x in logprobs):
        check.problem = UpstreamProblem.NO_LOGPROBS
        check.detail = f"POST {endpoint} returned token ids without their logprobs: {text[:200]!r}"


def _refused(check: UpstreamCheck, method: str, endpoint: str, status: int, text: str) -> bool:
    """Classify a non-200 answer into ``check``; True if there was one."""
    if status == 200:
        return False
    said = f"{method} {endpoint} answered {status}: {text[:200]!r}"
    if status == 404 and endpoint.endswith("/v1/models"):
        fix = "the base URL must be the server root or end in /v1, e.g. http://127.0.0.1:8000 or .../v1"
        check.problem, check.detail = UpstreamProblem.NOT_FOUND, f"{said}; {fix}"
    elif status == 404:
        check.problem, check.detail = UpstreamProblem.NOT_FOUND, f"{said}; check the model name and the base URL"
    elif status in (401, 403):
        fix = "give the server's key (engine.api_key, or --upstream-api-key for asyncthink serve)"
        check.problem, check.detail = UpstreamProblem.UNAUTHORIZED, f"{said}; {fix}"
    elif status >= 500 or status in (408, 429):  # busy or failing now, maybe not later
        check.problem, check.detail = UpstreamProblem.UNREACHABLE, said
    elif endpoint.endswith("/completions"):
        check.problem, check.detail = UpstreamProblem.NO_TOKEN_IDS, f"{said}; token-id prompts were refused"
    else:
        check.problem, check.detail = UpstreamProblem.BAD_ANSWER, said
    return True


def token_ids_in(choice: Any) -> list[int] | None:
    """A completion choice's token ids: vLLM's ``token_ids``, or ``logprobs.tokens`` written ``token_id:N``
    (``--return-tokens-as-token-ids``); None when it has neither."""
    ids = _field(choice, "token_ids", None)
    if isinstance(ids, list):
        return [int(t) for t in ids]
    tokens = _field(_field(choice, "logprobs", {}), "tokens", None)
    if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
        return [int(t.split(":", 1)[1]) for t in tokens]
    return None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _field(obj: Any, key: str, default: Any) -> Any:
    """``obj[key]`` when ``obj`` is a dict holding it (a server's JSON may be any shape), else ``default``."""
    value = obj.get(key) if isinstance(obj, dict) else None
    return default if value is None else value


def _reason(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s}s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error!r})"
    return f"{type(exc).__name__}: {exc}"

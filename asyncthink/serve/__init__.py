"""``asyncthink serve``: AsyncThink behind an OpenAI-compatible API (aiohttp).

Endpoints
    ``POST /v1/chat/completions`` and ``POST /v1/completions`` run one episode
    per request, JSON or SSE (``"stream": true``); ``GET /v1/models``,
    ``GET /v1/models/{id}``; ``GET /health`` (503 while draining).

Request
    The question is the last user message (chat; system/developer messages
    become an instruction before it, earlier turns are ignored) or ``prompt``
    (completions). ``max_tokens``/``max_completion_tokens`` is the organizer's
    token budget; ``temperature``, ``top_p`` and ``seed`` are honoured. An extra
    object ``"asyncthink": {mode, capacity, pool_policy, max_worker_tokens,
    max_forks, max_depth, parallel_traces, wall_time_s, stream_workers}``
    (``extra_body`` in the openai client) sets the episode, within the
    server's limits. ``n > 1``, ``stop``, ``logprobs``, ``echo``, ``best_of``
    and tools are refused with 400.

Response
    The text is the organizer's final text (worker returns appended after
    each ``<JOIN-i>``, as in its context); ``finish_reason`` is ``length``
    when a budget ended the episode, else ``stop``; ``usage.completion_tokens``
    counts every generated token of every row. The extra ``asyncthink`` field:
    ``episode_id, mode, capacity, status`` (ok | format_error |
    budget_exceeded), ``answer, error, format_errors[{code, detail, row_id}],
    forks, joins, organizer_tokens, worker_tokens, total_tokens, max_depth,
    latency`` (critical-path tokens), ``eta, eta_over_capacity, wall_s,
    workers[{row_id, parent, index, subquery, returned, tokens, finish_reason,
    joined}]`` and, in parallel mode, ``votes``.

Streaming
    Content deltas carry the organizer's tokens as they are generated; chunks
    with an empty delta carry ``asyncthink`` events (fork, join, worker text,
    done); see ``streaming``. Usage comes with ``stream_options.include_usage``.

Errors
    OpenAI-shaped JSON: 400 validation, 404 unknown model or route, 405, 408
    slow body, 413 body too large, 429 queue full or queue wait over, 503
    shutting down, 500 engine failure. A client that disconnects cancels its
    episode, which aborts its workers' engine requests.

Modules, one idea each: ``config`` (settings and limits), ``schema`` (request
validation), ``errors`` (OpenAI errors), ``admission`` (concurrency, queue,
drain), ``summary`` (what an episode looks like to a client), ``responses``
(OpenAI objects), ``streaming`` (SSE), ``app`` (routes, lifecycle), ``cli``.
"""

from asyncthink.serve.app import create_app, start_server
from asyncthink.serve.config import ServeConfig, ServeLimits

__all__ = ["ServeConfig", "ServeLimits", "create_app", "start_server"]

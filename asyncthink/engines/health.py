"""Wait for a server that was just started (``asyncthink serve``, ``vllm serve``) until its ``/health`` says 200.

One bounded poll for every script and test that starts a server process:
it gives up when the process exits (the server failed to start, so waiting
longer cannot help) or when ``timeout_s`` has passed, and either message ends
with the tail of the server's log when there is one.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

LOG_TAIL_CHARS = 3000  # enough for a Python traceback, short enough for an assertion message
PROBE_TIMEOUT_S = 2.0  # one GET: a server that is up answers /health at once


class ServerExited(RuntimeError):
    """The server's process ended before its ``/health`` answered 200."""


def is_healthy(url: str) -> bool:
    """Whether ``GET {url}/health`` answers 200 now (``url`` is the server root, ``http://host:port``)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=PROBE_TIMEOUT_S) as r:
            return r.status == 200
    except OSError:  # refused (not listening yet), reset, timed out, or an HTTP error such as 503 while starting
        return False


def wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen | None = None, log: str | Path | None = None,
                 name: str = "server", poll_s: float = 0.5) -> float:
    """Poll ``{url}/health`` every ``poll_s`` until it answers 200; return the seconds waited.

    Raises ``ServerExited`` if ``proc`` (the server's process, when given) ends first, and ``TimeoutError``
    after ``timeout_s``; both messages name ``name`` and quote the tail of ``log``.
    """
    start = time.monotonic()
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerExited(f"{name} exited with {proc.returncode} before {url}/health answered{_tail(log)}")
        if is_healthy(url):
            return time.monotonic() - start
        if time.monotonic() - start >= timeout_s:
            raise TimeoutError(f"{name} at {url} not healthy after {timeout_s:g}s{_tail(log)}")
        time.sleep(poll_s)


def _tail(log: str | Path | None) -> str:
    if log is None:
        return ""
    path = Path(log)
    text = path.read_text(errors="replace")[-LOG_TAIL_CHARS:] if path.exists() else "(no log written)"
    return f"; the end of {path}:\n{text}"

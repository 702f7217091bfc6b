"""Send the engine's and the frameworks' console output to a log file, keeping the terminal for ours.

vLLM's engine runs in child processes that inherit file descriptors 1 and 2,
and its, TRL's and transformers' messages come from loggers, ``warnings`` and
C code alike; only a redirect at the descriptor level catches all of them. Our
own output (tables, progress bars) goes to a stream on the original terminal,
which also becomes rich's global console, so progress bars made anywhere land
there.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def capture_engine_logs(log_path: Path | None) -> Iterator[TextIO]:
    """Redirect fds 1 and 2 to ``log_path`` (appending) and yield a stream on the terminal.

    ``log_path=None`` redirects nothing and yields ``sys.stdout`` (the ``--verbose`` behaviour).
    """
    if log_path is None:
        yield sys.stdout
        return
    import rich

    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    rich.reconfigure(file=terminal)
    try:
        yield terminal
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        rich.reconfigure(file=None)
        terminal.close()

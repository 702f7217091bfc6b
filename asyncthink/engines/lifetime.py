"""Engine processes die with us: a watchdog that SIGKILLs this process's descendants once it is gone.

vLLM starts its EngineCore and worker processes with multiprocessing *spawn*
(forced on CPU), so no fork hook can give them a parent-death signal, and
after a ``kill -9`` of the process that owns the engine they are adopted by
init and keep their memory and ports. ``ensure_watchdog`` starts one small
stdlib-only process per owner (its own session, so a terminal's Ctrl-C does
not reach it): every ``POLL_S`` it records the owner's descendants with their
start times (so a reused pid is never killed), and when the owner is gone it
kills the recorded processes and anything they started, then exits. A normal
shutdown has already stopped them, and the watchdog just exits. Limit: a
descendant born within the last poll before the owner died can be missed.

Run as a script (``python -I lifetime.py PID``) so it imports nothing of ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

POLL_S = 0.5
_watchdog: tuple[int, subprocess.Popen] | None = None  # (owner pid, watchdog process)


def ensure_watchdog() -> None:
    """Start the watchdog for this process, once (a forked child that calls it gets its own)."""
    global _watchdog
    if _watchdog is not None and _watchdog[0] == os.getpid() and _watchdog[1].poll() is None:
        return
    # -I: no script folder on sys.path (this folder's types.py would shadow the standard library)
    proc = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), str(os.getpid())],
                            stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    _watchdog = (os.getpid(), proc)


def _process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) for every process we can read."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        table[int(name)] = (int(fields[1]), int(fields[19]))
    return table


def descendants(roots: dict[int, int], table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """pid -> start time of every live process under ``roots`` (pid -> start time), roots included."""
    out = {p: t for p, t in roots.items() if table.get(p, (0, -1))[1] == t}
    frontier = list(out)
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in table.items():
            if ppid == parent and pid not in out:
                out[pid] = start
                frontier.append(pid)
    return out


def watch(owner: int) -> None:
    """Track ``owner``'s descendants until it dies, then kill them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    me = os.getpid()
    known: dict[int, int] = {}
    while os.getppid() == owner:  # once the owner is gone we are re-parented
        table = _process_table()
        if owner not in table:
            break
        known = {p: t for p, t in descendants({owner: table[owner][1]}, table).items() if p not in (owner, me)}
        time.sleep(POLL_S)
    for _ in range(2):  # a second pass catches what a dying process started meanwhile
        for pid in descendants(known, _process_table()):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)


if __name__ == "__main__":
    watch(int(sys.argv[1]))

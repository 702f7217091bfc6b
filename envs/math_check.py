"""math-verify under a hard time limit, callable from any thread.

math-verify bounds its own work with ``signal.alarm``, which only works in the
main thread, and some inputs (``9^{9^{9^{9}}}``) spend minutes inside C code
that no signal interrupts. So checks run in a long-lived child process: a
plain ``python -c`` subprocess that answers JSON lines on its stdin/stdout.
(No ``multiprocessing``: nothing forks the possibly threaded parent, and the
caller's ``__main__`` is never re-imported.) The parent waits at most
``timeout_s`` for a reply; past that it kills the child, the check counts as
failed, and the next call starts a fresh child (about a second, not charged
to that call's limit).

Inside the child, which is its own main thread, a soft alarm at
``soft_fraction * timeout_s`` interrupts slow pure-Python sympy work first, so
most slow checks end without a restart; the kill is for the C-level rest.

One checker serves one call at a time (a lock): a call waits its turn, then
has at most ``timeout_s``. Children are killed when their checker is garbage
collected and at interpreter exit (``weakref.finalize`` runs at exit), and a
child whose parent vanished sees end-of-input and exits.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from fractions import Fraction
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_KEY_CHARS = 1000  # longer normal forms are useless as vote keys
_REPO = Path(__file__).resolve().parents[1]


class MathChecker:
    """A math-verify child process with a hard limit on every call."""

    def __init__(self, timeout_s: float = 5.0, start_timeout_s: float = 60.0, soft_fraction: float = 0.8):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if not 0 < soft_fraction <= 1:
            raise ValueError(f"soft_fraction must be in (0, 1], got {soft_fraction!r}")
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.soft_fraction = soft_fraction
        self.restarts = 0  # children killed after a timeout or a crash
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None
        self._buffer = b""
        _CHECKERS.add(self)

    # -- the calls

    def verify(self, gold: str, answer: str) -> bool | None:
        """math-verify's verdict on ``answer`` against ``gold`` (both LaTeX or plain);
        None if it timed out or failed."""
        result = self.call("verify", gold, answer)
        return result if isinstance(result, bool) else None

    def normalize(self, answer: str) -> str | None:
        """A canonical string of ``answer``, equal for values math-verify would call equal: after sympy's
        simplification, a rational as ``p/q`` or an integer, another constant as ``~`` and its value to
        12 digits, else sympy's printout; None if it does not parse, timed out or failed."""
        result = self.call("normalize", answer)
        return result if isinstance(result, str) else None

    def call(self, op: str, *args: str) -> Any:
        """Run ``op`` in the child; None on timeout, crash or error."""
        request = json.dumps({"op": op, "args": args, "soft_s": self.soft_fraction * self.timeout_s}) + "\n"
        with self._lock:
            try:
                proc = self._ensure_started()
                proc.stdin.write(request.encode())
                proc.stdin.flush()
                reply = json.loads(self._read_line(proc, time.monotonic() + self.timeout_s))
            except (OSError, ValueError, TimeoutError, RuntimeError) as exc:
                log.warning("math check %s failed (%s: %s); restarting the checker", op, type(exc).__name__, exc)
                self._stop()
                self.restarts += 1
                return None
            except BaseException:
                self._stop()  # interrupted mid-call: the next call must not read this call's reply
                raise
        if not reply.get("ok"):
            log.debug("math check %s: %s", op, reply.get("error"))
            return None
        return reply.get("result")

    def close(self) -> None:
        with self._lock:
            self._stop()

    # -- the child

    def _ensure_started(self) -> subprocess.Popen:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
        proc = subprocess.Popen(
            self.child_command(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, bufsize=0,
        )
        self._proc, self._buffer = proc, b""
        self._finalizer = weakref.finalize(self, _terminate, proc)
        ready = json.loads(self._read_line(proc, time.monotonic() + self.start_timeout_s))
        if not ready.get("ready"):
            raise RuntimeError(f"math checker did not start: {ready!r}")
        return proc

    def child_command(self) -> list[str]:
        """The child's command line (tests swap in a child that hangs)."""
        return [sys.executable, "-c", "from asyncthink.envs.math_check import serve; serve()"]

    def _read_line(self, proc: subprocess.Popen, deadline: float) -> str:
        fd = proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no reply within the limit ({self.timeout_s} s)")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise RuntimeError(f"math checker exited with code {proc.poll()!r}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def _stop(self) -> None:
        if self._finalizer is not None:
            self._finalizer()  # kills and reaps the child, once
        self._proc, self._finalizer, self._buffer = None, None, b""

    def _forget_after_fork(self) -> None:
        # a forked copy of the parent must not kill (or talk to) the original's child
        if self._finalizer is not None:
            self._finalizer.detach()
        self._proc, self._finalizer, self._buffer = None, None, b""
        self._lock = threading.Lock()


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for f in (proc.stdin, proc.stdout):
        if f is not None:
            f.close()


_CHECKERS: weakref.WeakSet[MathChecker] = weakref.WeakSet()
_SHARED: dict[float, MathChecker] = {}
_SHARED_LOCK = threading.Lock()


def get_checker(timeout_s: float = 5.0) -> MathChecker:
    """The process-wide checker with this time limit (created on first use)."""
    with _SHARED_LOCK:
        if timeout_s not in _SHARED:
            _SHARED[timeout_s] = MathChecker(timeout_s)
        return _SHARED[timeout_s]


def _after_fork() -> None:
    for checker in list(_CHECKERS):
        checker._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork)


# -- numbers as keys (shared with the parent's fast path)


def number_key(x: Fraction) -> str:
    """``"27"`` for 27 and 27.0, ``"3/4"`` for 0.75."""
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


# -- the child side


class _SoftTimeout(BaseException):
    """Raised by the child's alarm; a BaseException so math-verify's ``except Exception`` lets it pass."""


def _on_alarm(signum, frame):
    raise _SoftTimeout()


def serve() -> None:
    """The child's loop: one JSON request per line in, one JSON reply per line out."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout = sys.stderr  # stray prints from libraries must not corrupt the replies
    logging.disable(logging.WARNING)  # math-verify warns on every unparsable input
    handlers = _handlers()
    signal.signal(signal.SIGALRM, _on_alarm)
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            signal.setitimer(signal.ITIMER_REAL, max(0.01, float(req.get("soft_s", 1.0))))
            try:
                reply = {"ok": True, "result": handlers[req["op"]](*req["args"])}
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except _SoftTimeout:
            reply = {"ok": False, "error": "soft timeout"}
        except Exception as exc:
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def _handlers() -> dict[str, Any]:
    import sympy
    from math_verify import parse, verify

    def parsed(text: str):
        # boxed, so LaTeX without $...$ ("\frac{3}{4}", "p - q") is found too
        return parse("\\boxed{" + text + "}", parsing_timeout=None)

    def do_verify(gold: str, answer: str) -> bool:
        return bool(verify(parsed(gold), parsed(answer), timeout_seconds=None))

    def do_normalize(answer: str) -> str | None:
        found = parsed(answer)
        if not found:
            return None
        return expression_key(found[0])

    def expression_key(expr) -> str | None:
        # math-verify keeps its parse unevaluated (2^{10}, 10\%, \sqrt{18}); equal values must share a key
        if isinstance(expr, sympy.Basic):
            expr = sympy.simplify(expr)
        if isinstance(expr, sympy.Rational):
            return number_key(Fraction(int(expr.p), int(expr.q)))
        if isinstance(expr, sympy.Float):
            return number_key(Fraction(float(expr)).limit_denominator(10**6))
        if isinstance(expr, sympy.Expr) and expr.is_number:
            value = complex(sympy.N(expr, 30))  # an irrational constant: its value to 12 digits is the class
            return f"~{value.real:.12g}" if value.imag == 0 else f"~{value.real:.12g}{value.imag:+.12g}j"
        if isinstance(expr, sympy.Expr):
            expr = sympy.expand(expr)  # x^2+2x+1 and (x+1)^2 are one class
        key = str(expr)
        return key if len(key) <= MAX_KEY_CHARS else None

    return {"verify": do_verify, "normalize": do_normalize}

"""``wait_healthy``: the one bounded wait for a started server's ``/health`` (scripts and tests use it)."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from asyncthink.engines.health import ServerExited, is_healthy, wait_healthy
from tests.conftest import free_port


class _Starting(BaseHTTPRequestHandler):
    """Answers 503 to the first two probes (a server still loading its model), then 200."""

    probes = 0

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        type(self).probes += 1
        self.send_response(200 if self.path == "/health" and type(self).probes > 2 else 503)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_waits_through_503s_until_200():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Starting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert not is_healthy(url)
        assert wait_healthy(url, 10, poll_s=0.01) >= 0 and _Starting.probes == 3
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_exits_is_reported_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("Traceback: no such model\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(ServerExited, match=r"(?s)exited with 3 .*no such model"):
        wait_healthy(f"http://127.0.0.1:{free_port()}", 10, proc, log, name="vLLM server")


def test_the_wait_is_bounded():
    with pytest.raises(TimeoutError, match=r"srv at http://127\.0\.0\.1:\d+ not healthy after 0\.2s"):
        wait_healthy(f"http://127.0.0.1:{free_port()}", 0.2, name="srv", poll_s=0.05)

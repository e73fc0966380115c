"""Serving the dashboard in the background as `totes demo` does, and stopping it as `totes down` does."""

from __future__ import annotations

import http.client
import os
from pathlib import Path

from shared.dashboard import server


def test_detached_server_answers_then_stops(tmp_path: Path, empty_warehouse: str) -> None:
    port = server.start_detached(tmp_path, {"WAREHOUSE_DB_URL": empty_warehouse}, server.free_port(0))
    pid = int((tmp_path / server.PID_FILE).read_text().split()[0])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/_stcore/health")
    assert connection.getresponse().status == 200
    assert server.stop_detached(tmp_path) is True
    os.waitpid(pid, 0)  # our child: reap it, so its pid is gone
    assert not (tmp_path / server.PID_FILE).exists()
    assert server.stop_detached(tmp_path) is False, "nothing left to stop"


def test_url_names_localhost_for_local_addresses() -> None:
    assert server.url(8501) == "http://localhost:8501/"
    assert server.url(80, "0.0.0.0") == "http://localhost:80/"  # noqa: S104 - shown, not bound
    assert server.url(80, "dash.example.org") == "http://dash.example.org:80/"

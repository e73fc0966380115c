"""Serving the dashboard: the Streamlit command line, a detached local server for `totes demo`, readiness.

Streamlit runs headless and never phones home (the network may be closed; usage statistics are off).
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from shared.errors import TransientError

APP = Path(__file__).resolve().parent / "app.py"
DEFAULT_PORT = 8501
PID_FILE = "dashboard.pid"
LOG_FILE = "dashboard.log"


def command(port: int, address: str = "127.0.0.1") -> list[str]:
    """The command line that serves the app on `address`:`port` (also the App Service's startup command)."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless=true",
        f"--server.port={port}",
        f"--server.address={address}",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
        "--client.toolbarMode=viewer",
    ]


def url(port: int, address: str = "127.0.0.1") -> str:
    """The address a browser opens."""
    try:
        ip = ipaddress.ip_address(address)
        host = "localhost" if ip.is_loopback or ip.is_unspecified else address
    except ValueError:  # a host name
        host = address
    return f"http://{host}:{port}/"


def free_port(preferred: int = DEFAULT_PORT) -> int:
    """`preferred` if nothing listens there, else a free port the system picks."""
    with socket.socket() as sock:
        if preferred and sock.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout_s: float = 60.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until the server on `port` answers its health check; TransientError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise TransientError(f"dashboard: the server exited with code {process.returncode} before it was ready")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/_stcore/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass  # not listening yet
        finally:
            connection.close()
        time.sleep(0.2)
    raise TransientError(f"dashboard: no answer on port {port} within {timeout_s:.0f} s")


def start_detached(local_dir: Path, env: Mapping[str, str], port: int) -> int:
    """Start the server in the background (pid and log in `local_dir`), replacing one started before; its port."""
    stop_detached(local_dir)
    port = free_port(port)
    local_dir.mkdir(parents=True, exist_ok=True)
    with (local_dir / LOG_FILE).open("ab") as log:
        process = subprocess.Popen(
            command(port),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    (local_dir / PID_FILE).write_text(f"{process.pid} {port}\n")
    wait_ready(port, process=process)
    return port


def stop_detached(local_dir: Path) -> bool:
    """Stop the server start_detached left running in `local_dir`; whether one was running."""
    pid_file = local_dir / PID_FILE
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    pid_file.unlink()
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists() or b"streamlit" not in cmdline.read_bytes():
        return False  # gone, or the pid now belongs to another program
    try:
        os.killpg(pid, signal.SIGTERM)  # its own session: the server and nothing else
    except ProcessLookupError:
        return False
    return True

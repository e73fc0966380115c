"""The local stack: an embedded PostgreSQL (pgserver) and Azurite, all state under one folder."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from shared.errors import TerminalError

log = logging.getLogger(__name__)

DATABASES = ("totesys", "warehouse")
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key, published in Microsoft's docs: not a secret.
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class StackUrls:
    """Where the running local stack answers: the three settings the pipeline needs."""

    totesys_db_url: str
    warehouse_db_url: str
    lake_storage: str

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables."""
        return {
            "TOTESYS_DB_URL": self.totesys_db_url,
            "WAREHOUSE_DB_URL": self.warehouse_db_url,
            "LAKE_STORAGE": self.lake_storage,
        }


def azurite_connection_string(
    blob_port: int, queue_port: int, host: str = "127.0.0.1", table_port: int | None = None
) -> str:
    """The connection string of an Azurite listening on the given blob, queue (and table) ports."""
    table = f"TableEndpoint=http://{host}:{table_port}/{AZURITE_ACCOUNT};" if table_port else ""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://{host}:{blob_port}/{AZURITE_ACCOUNT};"
        f"QueueEndpoint=http://{host}:{queue_port}/{AZURITE_ACCOUNT};{table}"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def azurite_binary() -> Path:
    """The pinned Azurite from package.json (installed by `npm ci`; `make setup` runs it)."""
    for root in (PROJECT_ROOT, Path.cwd()):
        candidate = root / "node_modules" / ".bin" / "azurite"
        if candidate.exists():
            return candidate
    found = shutil.which("azurite")
    if found:
        return Path(found)
    raise TerminalError(
        "Azurite is not installed: run `npm ci` in the project folder (`make setup` does it), "
        "or set LAKE_STORAGE to an existing storage account"
    )


class LocalStack:
    """Start, reuse and stop PostgreSQL + Azurite whose state lives under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.pgdata = self.root / "pg"
        self.azurite_dir = self.root / "azurite"
        self.state_file = self.root / "stack.json"

    def up(self) -> StackUrls:
        """Start what is not running (idempotent) and return the stack's URLs."""
        self.root.mkdir(parents=True, exist_ok=True)
        base_uri = self._start_postgres()
        blob_port, queue_port, table_port = self._start_azurite()
        return StackUrls(
            totesys_db_url=with_database(base_uri, "totesys"),
            warehouse_db_url=with_database(base_uri, "warehouse"),
            lake_storage=azurite_connection_string(blob_port, queue_port, table_port=table_port),
        )

    def down(self) -> list[str]:
        """Stop PostgreSQL and Azurite if they run; return what was stopped."""
        stopped = []
        state = self._state()
        pid = state.get("azurite_pid")
        if pid and _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            stopped.append(f"Azurite (pid {pid})")
        if (self.pgdata / "postmaster.pid").exists():
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
                from pgserver import _commands

            logging.getLogger("pgserver").setLevel(logging.WARNING)  # not its command lines on stderr
            pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009 (created at import time, unknown to mypy)

            user = "pgserver" if os.geteuid() == 0 else None
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user)
            stopped.append(f"PostgreSQL ({self.pgdata})")
        self._write_state({})
        return stopped

    def _start_postgres(self) -> str:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pgserver

            logging.getLogger("pgserver").setLevel(logging.WARNING)

            _ensure_system_user()
            server = pgserver.get_server(self.pgdata, cleanup_mode=None)
            uri = server.get_uri()
        with psycopg.connect(uri, autocommit=True) as conn:
            existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
            for name in DATABASES:
                if name not in existing:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return uri

    def _start_azurite(self) -> tuple[int, int, int | None]:
        state = self._state()
        pid, blob, queue = state.get("azurite_pid"), state.get("blob_port"), state.get("queue_port")
        if pid and _alive(pid) and blob and queue and _port_open(blob):
            return blob, queue, state.get("table_port")
        self.azurite_dir.mkdir(parents=True, exist_ok=True)
        blob, queue, table = free_port(), free_port(), free_port()
        logfile = (self.root / "azurite.log").open("ab")
        proc = subprocess.Popen(
            [
                str(azurite_binary()),
                "--silent",
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--location",
                str(self.azurite_dir),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(blob),
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                str(queue),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(table),
            ],
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not (_port_open(blob) and _port_open(queue)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise TerminalError(f"Azurite did not start (exit code {proc.poll()}); see {self.root / 'azurite.log'}")
            time.sleep(0.1)
        self._write_state({"azurite_pid": proc.pid, "blob_port": blob, "queue_port": queue, "table_port": table})
        return blob, queue, table

    def _state(self) -> dict[str, int]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def _write_state(self, state: dict[str, int]) -> None:
        self.state_file.write_text(json.dumps(state))


def with_database(uri: str, database: str) -> str:
    """The same server URI pointing at another database."""
    # pgserver's URI is postgresql://postgres:@/postgres?host=<socket dir>
    head, _, query = uri.partition("?")
    head = head.rsplit("/", 1)[0] + "/" + database
    return f"{head}?{query}" if query else head


def _ensure_system_user() -> None:
    """As root, pgserver runs PostgreSQL as a system user it creates on first use with `useradd`.

    Two processes starting at once on a fresh machine (pytest's two workers) would both run useradd; both
    can succeed with different uids, and the loser's data folder then belongs to a uid that no longer
    exists. One lock across processes makes the first creation the only one.
    """
    if os.geteuid() != 0:
        return
    import fcntl

    from pgserver.utils import ensure_user_exists

    lock_path = Path(tempfile.gettempdir()) / "totes-pgserver-user.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_user_exists("pgserver")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

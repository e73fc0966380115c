"""The files one sales_order row passes through from the source to the warehouse (issue 11), measured.

`python -m tools.trace_row` starts a private local stack (PostgreSQL + Azurite in a temporary folder, stopped
at the end), seeds the snapshot and runs one cycle (shared.pipeline.run_cycle); then it changes ONE sales_order
row in the source and runs a second cycle while recording every file of the project that runs code (a profile
hook on every thread) or is read (an audit hook on `open`: the .sql files). A package `__init__.py` that only
re-exports a name one of those files imports counts too: a reader opens it to find where the name is defined.
It prints the files on the row's path in the order they first ran, then those it does not pass through
(OFF_PATH: cross-cutting code, run bookkeeping, other rows' state) and why each is left out of the count.

tests/test_docs.py runs the same trace on the test fixtures and checks docs/architecture.md ("Following one
sales_order row") against it. The deploy package leaves tools/ out (.funcignore).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from shared.lake import Lake
from shared.pipeline import run_cycle
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# The files that run code in the traced cycle but that the row does not pass through, and why: left out of the count.
OFF_PATH: dict[str, str] = {
    # cross-cutting: configuration, observability, errors, connections and storage transport
    "shared/settings.py": "reads the configuration; no row",
    "shared/telemetry.py": "spans and metrics around the stages; no row",
    "shared/redact.py": "scrubs secrets from messages; no row",
    "shared/errors.py": "the exception types; no row",
    "shared/connection.py": "opens a database connection; the row travels over it as over any driver",
    "shared/warehouse/connect.py": "signs in to the warehouse (password or Entra token); no row",
    "shared/lake/__init__.py": "blob transport (write-once, ETag, leases): moves bytes, knows no table or row",
    # run bookkeeping: run ids, locks and the DDL, never a row's values
    "shared/drain.py": "which runs wait, in which order, under which lock; run ids only",
    "shared/backlog.py": "which runs the ledger holds (asked by the drain) and the backlog metrics; run ids only",
    "shared/warehouse/ledger.py": "the load lock, the DDL version and the ledger row; run ids only",
    "shared/warehouse/__init__.py": "reads the DDL for its digest every load, applies it when it changed; moves no row",
    # other rows: the transform state holds the parents that dimension joins need
    "shared/transform/store.py": "the transform state: department, staff, address and counterparty rows, which a "
    "sales_order row neither enters nor is joined to",
}
# Which sales order is changed: any id of the snapshot would do.
SALES_ORDER_ID = 1


@dataclass(frozen=True)
class Trace:
    """The project files the traced cycle ran code in or read, in the order they first did."""

    files: tuple[str, ...]

    @property
    def path(self) -> tuple[str, ...]:
        """The files on the row's path: all but those OFF_PATH, each followed by the re-exporting
        package `__init__.py` files it imports through (`forwarders`)."""
        path: dict[str, None] = {}
        for name in self.files:
            if name not in OFF_PATH:
                path[name] = None
                path.update(dict.fromkeys(forwarders(name)))
        return tuple(path)

    @property
    def off_path(self) -> tuple[str, ...]:
        """The files the cycle ran that the row does not pass through (OFF_PATH says why)."""
        return tuple(f for f in self.files if f in OFF_PATH)


class _Recorder:
    """Project files seen, first-seen order; a file's relative name is worked out once."""

    def __init__(self) -> None:
        self.seen: dict[str, None] = {}
        self._names: dict[str, str | None] = {}

    def saw(self, filename: str) -> None:
        name = self._names.get(filename, "")
        if name == "":
            name = self._names[filename] = _project_file(filename)
        if name is not None:
            self.seen.setdefault(name, None)

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            self.saw(frame.f_code.co_filename)


_recording: _Recorder | None = None
_hooked = False


def _project_file(filename: str) -> str | None:
    """`filename` relative to the project if it is code of shared/ or function_app.py, else None."""
    try:
        relative = Path(filename).resolve().relative_to(ROOT).as_posix()
    except (ValueError, OSError):
        return None
    return relative if relative == "function_app.py" or relative.startswith("shared/") else None


def forwarders(name: str) -> list[str]:
    """The package `__init__.py` files that project file `name` imports a name through which the package
    does not define (it re-exports it, eagerly or lazily), in import order."""
    if not name.endswith(".py"):
        return []
    found: dict[str, None] = {}
    for node in ast.walk(ast.parse((ROOT / name).read_text())):
        if not isinstance(node, ast.ImportFrom) or node.level or not (node.module or "").startswith("shared"):
            continue
        package = ROOT / str(node.module).replace(".", "/")
        init = package / "__init__.py"
        if not init.exists():
            continue
        defined = _defined(init)
        for alias in node.names:
            submodule = (package / f"{alias.name}.py").exists() or (package / alias.name).is_dir()
            if alias.name not in defined and not submodule:
                found[init.relative_to(ROOT).as_posix()] = None
    return list(found)


def _defined(module: Path) -> set[str]:
    """The names a module binds at its top level by def, class or assignment (not by import)."""
    names: set[str] = set()
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _on_audit(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: a data file of shared/ (a .sql file) opened while recording."""
    recorder = _recording
    if recorder is None or event != "open" or not isinstance(args[0], str | os.PathLike):
        return
    name = os.fspath(args[0])
    if not name.endswith((".py", ".pyc")):
        recorder.saw(name)


@contextmanager
def recording() -> Iterator[_Recorder]:
    """Record, while the block runs, the project files that run code (every thread) or are opened."""
    global _recording, _hooked
    if not _hooked:  # an audit hook cannot be removed: one per process, idle outside this block
        sys.addaudithook(_on_audit)
        _hooked = True
    recorder = _Recorder()
    previous, previous_threads = sys.getprofile(), threading.getprofile()
    _recording = recorder
    threading.setprofile(recorder.profile)  # the threads started from now on (the stages' pools)
    sys.setprofile(recorder.profile)
    try:
        yield recorder
    finally:
        sys.setprofile(previous)
        threading.setprofile(previous_threads)
        _recording = None


def change_one_order(source_url: str, sales_order_id: int = SALES_ORDER_ID) -> None:
    """Change one sales_order row in the source, as the application would (units_sold and last_updated)."""
    with psycopg.connect(source_url) as conn:
        changed = conn.execute(
            "UPDATE sales_order SET units_sold = units_sold + 1, "
            "last_updated = date_trunc('milliseconds', now() AT TIME ZONE 'UTC') - interval '1 second' "
            "WHERE sales_order_id = %s",
            (sales_order_id,),
        ).rowcount
    if changed != 1:
        raise LookupError(f"sales_order {sales_order_id} is not in the source")


def trace_row(settings: Settings, lake: Lake, sales_order_id: int = SALES_ORDER_ID) -> Trace:
    """Load the source as it is, change one sales_order row, and trace the cycle that carries it to the
    warehouse; raise if that cycle did not load exactly that one row."""
    assert settings.totesys_db_url is not None
    run_cycle(settings, lake)
    change_one_order(settings.totesys_db_url.reveal(), sales_order_id)
    with recording() as recorder:
        cycle = run_cycle(settings, lake)
    loaded = cycle.load.rows if cycle.load else {}
    if cycle.extract.rows.get("sales_order") != 1 or loaded.get("fact_sales_order") != 1:
        raise AssertionError(f"the traced cycle did not carry one sales_order row: {cycle.extract.rows}, {loaded}")
    return Trace(tuple(recorder.seen))


def _trace_on_a_private_stack() -> Trace:
    from shared.local.source.seed import seed_source
    from shared.local.stack import LocalStack
    from shared.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="totes-trace-") as folder:
        stack = LocalStack(Path(folder))
        try:
            urls = stack.up()
            seed_source(urls.totesys_db_url)
            settings = load_settings(urls.as_env(), needs=("source", "warehouse", "lake"))
            return trace_row(settings, Lake.from_settings(settings))
        finally:
            stack.down()


def main(argv: Sequence[str] | None = None) -> int:
    """Print the files on the row's path (numbered, in first-run order), then those off it and why."""
    parser = argparse.ArgumentParser(prog="python -m tools.trace_row", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print {'path': [...], 'off_path': [...]}")
    args = parser.parse_args(argv)
    trace = _trace_on_a_private_stack()
    if args.json:
        print(json.dumps({"path": trace.path, "off_path": trace.off_path}, indent=2))
        return 0
    print(f"on the row's path: {len(trace.path)} files")
    for number, name in enumerate(trace.path, start=1):
        print(f"{number:>3}. {name}")
    print(f"off the row's path (not counted): {len(trace.off_path)} files")
    for name in trace.off_path:
        print(f"     {name}: {OFF_PATH[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

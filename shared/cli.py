"""The `totes` command: a thin layer over the package, one command = one call.

Human messages go to stderr; machine-readable output (the `up` exports) to stdout.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from azure.core.exceptions import AzureError

from shared import redact, telemetry
from shared.errors import EtlError, SettingsError
from shared.local.stack import LocalStack
from shared.settings import Need, Settings, load_settings, telemetry_connection_string

if TYPE_CHECKING:
    from shared.pipeline import CycleSummary

log = logging.getLogger("totes")
LOCAL_DIR = Path(".local")


def say(message: str) -> None:
    """A human message on stderr, scrubbed of secrets."""
    print(redact.scrub(message), file=sys.stderr, flush=True)


def stack_settings(local_dir: Path = LOCAL_DIR, *needs: Need) -> Settings:
    """Settings from the environment, checked for what the command `needs` (default: all three).

    Where a needed database URL or LAKE_STORAGE is unset, start the local stack under `local_dir` and use
    it for the settings not set; a command whose needs are all set never starts it."""
    needs = needs or ("source", "warehouse", "lake")
    settings = load_settings()
    try:
        return settings.require(*needs)
    except SettingsError:
        pass
    say(f"starting the local stack in {local_dir}/ (PostgreSQL + Azurite) for the settings not set ...")
    urls = LocalStack(local_dir).up()
    return load_settings(defaults=urls.as_env()).require(*needs)


def cmd_up(args: argparse.Namespace) -> int:
    """Start the local stack (idempotent) and print `export` lines for its settings."""
    settings = stack_settings(args.local_dir)
    from shared.lake import Lake

    Lake.from_settings(settings).ensure()
    exports = {
        "TOTESYS_DB_URL": settings.totesys_db_url.reveal() if settings.totesys_db_url else "",
        "WAREHOUSE_DB_URL": settings.warehouse_db_url.reveal() if settings.warehouse_db_url else "",
        "LAKE_STORAGE": settings.lake.connection_string.reveal()
        if settings.lake and settings.lake.connection_string
        else "",
    }
    for name, value in exports.items():
        if value:
            print(f"export {name}={shlex.quote(value)}")
    if args.settings_file and exports["LAKE_STORAGE"]:
        from shared.local.settings_file import write_local_settings

        say(f"wrote {write_local_settings(Path(args.settings_file), exports)} for `func start`")
    say('local stack up. Use it in this shell with: eval "$(totes up)"')
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the local stack."""
    from shared.dashboard import server

    dashboard = server.stop_detached(args.local_dir)
    stopped = LocalStack(args.local_dir).down() + (["dashboard"] if dashboard else [])
    say("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    """Create the totesys schema and load the snapshot (x --scale)."""
    from shared.local.source.seed import seed_source

    settings = stack_settings(args.local_dir)
    assert settings.totesys_db_url is not None
    counts = seed_source(settings.totesys_db_url.reveal(), scale=args.scale, replace=args.replace, progress=say)
    print_counts("source (totesys)", counts)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Make application-like changes on the source (--changes N, or --duration S at --rate R)."""
    from shared.local.source.simulate import simulate

    settings = stack_settings(args.local_dir)
    assert settings.totesys_db_url is not None
    report = simulate(
        settings.totesys_db_url.reveal(),
        seed=args.seed,
        changes=args.changes,
        duration_s=args.duration_s,
        rate=args.rate,
        progress=say,
    )
    for line in report.summary():
        print(line)
    return 130 if report.interrupted else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on embedded defaults: up, seed if empty, run, simulate changes, run again, summary."""
    from shared.local.demo import run_demo

    started = time.monotonic()
    settings = stack_settings(args.local_dir, "source", "warehouse", "lake")
    run_demo(settings, changes=args.changes, seed=args.seed, say=say)
    from shared.dashboard import server

    port = server.start_detached(args.local_dir, dashboard_env(settings), server.DEFAULT_PORT)
    say(f"demo finished in {time.monotonic() - started:.1f} s")
    say('next: eval "$(totes up)"; totes simulate --changes 100; totes run --once; totes status; totes down')
    print(f"dashboard: {server.url(port)} (running in the background; totes down stops it)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """extract -> transform -> load in-process, once or every N seconds (a failed cycle is logged)."""
    from shared.pipeline import run_cycle

    settings = stack_settings(args.local_dir, "source", "warehouse", "lake")
    if args.every is None:
        print_cycle(run_cycle(settings, progress=say))
        return 0
    say(f"running a cycle every {args.every:g} s; Ctrl-C stops")
    while True:
        started = time.monotonic()
        try:
            print_cycle(run_cycle(settings, progress=say))
        except EtlError as exc:
            log.error("cycle failed, next one in %s s: %s", args.every, exc)
        except Exception:  # a loop that keeps going: any failed cycle is logged, not fatal
            log.exception("cycle failed unexpectedly, next one in %s s", args.every)
        time.sleep(max(0.0, args.every - (time.monotonic() - started)))


def cmd_extract(args: argparse.Namespace) -> int:
    """Run the extract stage once."""
    from shared.extract import LEASE_BLOB, extract
    from shared.lake import Lake

    settings = stack_settings(args.local_dir, "source", "lake")
    lake = Lake.from_settings(settings)
    lake.ensure()
    result = extract(settings, lake)
    if result.yielded:
        say(f"another extract is running (it holds {lake.raw}/{LEASE_BLOB}): this one yielded, nothing extracted")
        return 0
    if result.run_id is None:
        say("no changes in the source since the last run")
        return 0
    print_counts(f"extracted run {result.run_id}", result.rows)
    print(f"next: totes transform {result.run_id}")
    return 0


def cmd_transform(args: argparse.Namespace) -> int:
    """Run the transform stage on one extracted run."""
    from shared.lake import Lake
    from shared.transform.stage import transform

    settings = stack_settings(args.local_dir, "lake")
    lake = Lake.from_settings(settings)
    outcome = transform(lake, args.run_id)
    if outcome.status == "quarantined":
        say(f"run {args.run_id} quarantined: see {lake.curated}/{outcome.quarantine}")
        return 2
    print_counts(f"transformed run {args.run_id} ({outcome.status})", outcome.rows)
    print(f"next: totes load {args.run_id}")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """Load one transformed run into the warehouse."""
    from shared.lake import Lake
    from shared.load import load

    settings = stack_settings(args.local_dir, "warehouse", "lake")
    result = load(settings, Lake.from_settings(settings), args.run_id)
    if result.already_loaded:
        say(f"run {args.run_id} was already loaded: nothing changed")
        return 0
    print_counts(f"loaded run {args.run_id} in {result.duration_s:.2f} s", result.rows)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Show recent runs from the warehouse ledger and the current lag."""
    from shared.backlog import backlog_lines
    from shared.lake import Lake
    from shared.load import status

    settings = stack_settings(args.local_dir, "warehouse")
    report = status(settings, limit=args.limit)
    runs = report["runs"]
    if not runs:
        print("no run loaded yet")
    for run in runs:
        rows = sum(int(v) for v in run["row_counts"].values())
        print(f"{run['run_id']}  loaded {run['loaded_at']:%Y-%m-%d %H:%M:%S}  {rows:>10,} rows")
    lag = report.get("lag_s")
    shown = f"{lag:,.0f} s (now - newest source change loaded)" if lag is not None else "n/a"
    if settings.lake is not None:
        for line in backlog_lines(settings, Lake.from_settings(settings)):
            print(line)
    print(f"current lag: {shown}")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    """Supersede a quarantined run by a re-extract of its rows from the (fixed) source."""
    from shared.extract.retry import retry
    from shared.lake import Lake

    settings = stack_settings(args.local_dir, "source", "lake")
    new_id = retry(settings, Lake.from_settings(settings), args.run_id)
    say(f"run {args.run_id} is superseded by run {new_id} (its rows as the source holds them now)")
    print("next: totes run --once (drains the backlog from it on)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Compare the warehouse with the source, table by table; exit 1 on any difference."""
    from shared.verify import verify

    settings = stack_settings(args.local_dir, "source", "warehouse")
    assert settings.totesys_db_url is not None and settings.warehouse_db_url is not None
    say("verify: warehouse (current rows) against the source, every column")
    report = verify(
        settings.totesys_db_url.reveal(), settings.warehouse_db_url.reveal(), tuple(args.table or ()), progress=print
    )
    if report.ok:
        print(f"verify: the warehouse equals the source ({len(report.tables)} tables)")
        return 0
    print(f"verify: {report.differences:,} rows differ; see the tables marked DIFFERS above")
    return 1


def dashboard_env(settings: Settings) -> dict[str, str]:
    """The settings the dashboard server needs: the warehouse and, where there is one, the lake."""
    assert settings.warehouse_db_url is not None
    env = {"WAREHOUSE_DB_URL": settings.warehouse_db_url.reveal()}
    if settings.lake and settings.lake.connection_string:
        env["LAKE_STORAGE"] = settings.lake.connection_string.reveal()
    env.update(RAW_CONTAINER=settings.raw_container, CURATED_CONTAINER=settings.curated_container)
    return env


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard on the warehouse (and lake) of the local stack or the environment until Ctrl-C."""
    import os
    import subprocess

    from shared.dashboard import server

    settings = stack_settings(args.local_dir, "warehouse")
    port = server.free_port(args.port)
    process = subprocess.Popen(server.command(port, args.address), env={**os.environ, **dashboard_env(settings)})
    try:
        server.wait_ready(port, process=process)
        say(f"dashboard: {server.url(port, args.address)} (Ctrl-C stops it)")
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        process.terminate()
        process.wait(timeout=10)


def print_cycle(summary: CycleSummary) -> None:
    """Print a cycle's final summary: rows per warehouse table, duration per stage, lag."""
    if summary.extract.yielded:
        print("another extract was running: this cycle yielded, nothing to load")
        return
    if summary.run_id is None:
        print("no changes in the source: nothing to load")
        return
    assert summary.load is not None
    print_counts(f"run {summary.run_id}: merged into the warehouse", summary.load.rows)
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in summary.durations.items())
    print(f"durations: {stages}")
    if summary.load.lag_s is not None:
        print(f"source-commit-to-warehouse lag: {summary.load.lag_s:.1f} s")


def print_counts(title: str, counts: dict[str, int]) -> None:
    """Print a per-table row count summary on stdout."""
    print(f"{title}: rows per table")
    width = max((len(t) for t in counts), default=0)
    for table, count in counts.items():
        print(f"  {table:<{width}}  {count:>10,}")


def _service(exc: BaseException) -> str:
    """Which service a driver error came from, with the settings that name it."""
    if isinstance(exc, AzureError):
        return "the lake storage (setting LAKE_STORAGE)"
    return "a database (setting TOTESYS_DB_URL or WAREHOUSE_DB_URL)"


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Compare every source table with the lake's archive; write the differences as a correction run."""
    from shared.lake import Lake
    from shared.reconcile import reconcile

    settings = stack_settings(args.local_dir, "source", "lake")
    lake = Lake.from_settings(settings)
    lake.ensure()
    result = reconcile(settings, lake)
    for table in result.tables:
        print(table.line())
    say(result.summary())
    if result.run_id is not None:
        print(f"next: totes transform {result.run_id} && totes load {result.run_id}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Rebuild a warehouse at URL from the raw archive alone: every run transformed again and loaded."""
    from shared.lake import Lake
    from shared.replay import replay

    settings = stack_settings(args.local_dir, "lake")
    result = replay(settings, Lake.from_settings(settings), args.into, args.from_run, progress=print)
    print_counts(f"replayed {result.loaded} of {result.transformed} runs in {result.duration_s:.2f} s", result.rows)
    print("next: WAREHOUSE_DB_URL=<that URL> totes verify, then swap the databases")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every `totes` command."""
    parser = argparse.ArgumentParser(prog="totes", description=__doc__)
    parser.add_argument("--local-dir", type=Path, default=LOCAL_DIR, help="local stack state (default .local)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    up = command("up", cmd_up, 'start the local stack and print export lines: eval "$(totes up)"')
    up.add_argument(
        "--settings-file",
        default="local.settings.json",
        help="write the stack's settings for `func start` here (default local.settings.json; '' to skip)",
    )
    command("down", cmd_down, "stop the local stack")
    seed = command("seed", cmd_seed, "create the totesys schema and load the real snapshot")
    seed.add_argument("--scale", type=int, default=1, help="synthesise N times the snapshot's rows")
    seed.add_argument("--replace", action="store_true", help="drop and re-seed a populated database")
    simulate = command("simulate", cmd_simulate, "application-like traffic on the source, deterministic per seed")
    simulate.add_argument(
        "--seed", type=int, default=0, metavar="S", help="random seed: the same seed makes the same changes"
    )
    simulate.add_argument("--changes", type=int, metavar="N", help="make N changes (paced if --rate is given)")
    simulate.add_argument(
        "--duration", dest="duration_s", type=float, metavar="SECONDS", help="run for SECONDS (with --rate)"
    )
    simulate.add_argument("--rate", type=float, metavar="R", help="changes per second (default 1 with --duration)")
    demo = command("demo", cmd_demo, "the main job on embedded defaults")
    demo.add_argument("--changes", type=int, default=200, help="simulated changes between the two cycles")
    demo.add_argument("--seed", type=int, default=1, help="seed of the simulated changes")
    run = command("run", cmd_run, "extract -> transform -> load in-process")
    when = run.add_mutually_exclusive_group()
    when.add_argument("--once", action="store_true", help="one cycle (the default)")
    when.add_argument("--every", type=float, metavar="SECONDS", help="a cycle every SECONDS until Ctrl-C")
    command("extract", cmd_extract, "run the extract stage once")
    transform = command("transform", cmd_transform, "run the transform stage on one run")
    transform.add_argument("run_id")
    load = command("load", cmd_load, "load one transformed run into the warehouse")
    load.add_argument("run_id")
    retry = command("retry", cmd_retry, "supersede a quarantined run by a re-extract of its rows")
    retry.add_argument("run_id")
    status = command("status", cmd_status, "recent runs from the ledger, the backlog and the current lag")
    status.add_argument("--limit", type=int, default=10, help="how many runs to show")
    verify = command("verify", cmd_verify, "compare the warehouse with the source, every column; exit 1 if they differ")
    verify.add_argument("--table", action="append", metavar="TABLE", help="only this star table (repeatable)")
    dashboard = command("dashboard", cmd_dashboard, "serve the dashboard on the warehouse until Ctrl-C")
    dashboard.add_argument("--port", type=int, default=8501, help="port to listen on (a free one if taken)")
    dashboard.add_argument("--address", default="127.0.0.1", help="address to listen on")
    command("reconcile", cmd_reconcile, "compare the source with the lake's archive; write a correction run")
    replay = command("replay", cmd_replay, "rebuild a warehouse from the raw archive alone (every run, in order)")
    replay.add_argument("--into", required=True, metavar="URL", help="the target warehouse (a new, empty database)")
    replay.add_argument("--from", dest="from_run", metavar="RUN_ID", help="load only the runs from RUN_ID on")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `totes`: parse, run one command, map pipeline errors to exit codes."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    redact.install()
    telemetry.configure(telemetry_connection_string())
    try:
        return int(args.func(args))
    except EtlError as exc:
        say(f"totes {args.command}: error: {' '.join(str(exc).split())}")
        return 2
    except (psycopg.Error, AzureError) as exc:  # a driver error no stage turned into a pipeline error
        log.debug("totes %s failed", args.command, exc_info=True)
        say(f"totes {args.command}: error: {_service(exc)} failed: {redact.describe(exc)}")
        return 2
    except Exception as exc:  # a bug: one scrubbed line; the (scrubbed) traceback with -v
        log.debug("totes %s failed", args.command, exc_info=True)
        say(f"totes {args.command}: unexpected error: {redact.describe(exc)} (-v shows the traceback)")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The `totes` command: a thin layer over the package, one command = one call.

Human messages go to stderr; machine-readable output (the `up` exports) to stdout.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg

from shared.errors import EtlError
from shared.localstack import LocalStack
from shared.settings import Settings, load_settings

log = logging.getLogger("totes")
LOCAL_DIR = Path(".local")


def say(message: str) -> None:
    """A human message on stderr."""
    print(message, file=sys.stderr, flush=True)


def stack_settings(local_dir: Path = LOCAL_DIR) -> Settings:
    """Settings from the environment; where the database URLs or LAKE_STORAGE are unset, start the
    local stack under `local_dir` and use it for those."""
    settings = load_settings()
    if settings.totesys_db_url and settings.warehouse_db_url and settings.lake:
        return settings
    say(f"starting the local stack in {local_dir}/ (PostgreSQL + Azurite) for the settings not set ...")
    urls = LocalStack(local_dir).up()
    return load_settings(defaults=urls.as_env())


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
    say('local stack up. Use it in this shell with: eval "$(totes up)"')
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Stop the local stack."""
    stopped = LocalStack(args.local_dir).down()
    say("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    """Create the totesys schema and load the snapshot (x --scale)."""
    from shared.source.seed import seed_source

    settings = stack_settings(args.local_dir)
    assert settings.totesys_db_url is not None
    counts = seed_source(
        settings.totesys_db_url.reveal(), scale=args.scale, replace=args.replace, progress=say
    )
    print_counts("source (totesys)", counts)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on embedded defaults: stack up, seed if empty, show what is there."""
    from shared.source.seed import seed_source, table_counts

    settings = stack_settings(args.local_dir)
    assert settings.totesys_db_url is not None
    url = settings.totesys_db_url.reveal()
    with psycopg.connect(url) as conn:
        counts = table_counts(conn)
    if all(c <= 0 for c in counts.values()):
        say("seeding totesys with the 2024-11-15 snapshot ...")
        counts = seed_source(url, progress=say)
    print_counts("source (totesys)", counts)
    say('next: eval "$(totes up)"; totes simulate --changes 100; totes down')
    return 0


def print_counts(title: str, counts: dict[str, int]) -> None:
    """Print a per-table row count summary on stdout."""
    print(f"{title}: rows per table")
    width = max(len(t) for t in counts)
    for table, count in counts.items():
        print(f"  {table:<{width}}  {count:>10,}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every `totes` command."""
    parser = argparse.ArgumentParser(prog="totes", description=__doc__)
    parser.add_argument(
        "--local-dir", type=Path, default=LOCAL_DIR, help="local stack state (default .local)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    command("up", cmd_up, 'start the local stack and print export lines: eval "$(totes up)"')
    command("down", cmd_down, "stop the local stack")
    seed = command("seed", cmd_seed, "create the totesys schema and load the real snapshot")
    seed.add_argument("--scale", type=int, default=1, help="synthesise N times the snapshot's rows")
    seed.add_argument("--replace", action="store_true", help="drop and re-seed a populated database")
    command("demo", cmd_demo, "the main job on embedded defaults")
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
    try:
        return int(args.func(args))
    except EtlError as exc:
        say(f"totes {args.command}: error: {exc}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

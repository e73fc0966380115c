"""A stage invocation killed by SIGKILL at a write boundary, in its own process (run by tests/test_recovery.py):
`python -m tests.recovery_child transform|load|extract-data|extract-manifest`, settings from the environment.

extract-data: killed after the run's first raw data file is written (no manifest, state untouched).
extract-manifest: killed right after the run's manifest is written, before its watermarks are advanced.
transform: killed after the run's curated files and state are written, before its manifest (the commit marker).
load: killed early in the load's transaction, after the curated files are staged.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import shared.drain
from shared.extract import extract
from shared.lake import Lake
from shared.load import Step, _load
from shared.settings import load_settings


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(stage: str) -> None:
    """Drain `stage` and die at its boundary."""
    settings = load_settings(needs=("warehouse", "lake"))
    lake = Lake.from_settings(settings)
    if stage.startswith("extract-"):
        real_put = lake.put_once
        written: list[str] = []

        def put_then_die(container: str, name: str, *args: Any, **kwargs: Any) -> None:
            if stage == "extract-data" and written:
                _die()  # one data file is in the lake, the rest and the manifest are not
            real_put(container, name, *args, **kwargs)
            written.append(name)
            if stage == "extract-manifest" and name.startswith("_runs/"):
                _die()

        lake.put_once = put_then_die  # type: ignore[method-assign]
        extract(settings.require("source"), lake)
    elif stage == "transform":
        real = lake.put_once

        def put_once(container: str, name: str, *args: Any, **kwargs: Any) -> None:
            if container == lake.curated and name.startswith("_runs/"):
                _die()
            real(container, name, *args, **kwargs)

        lake.put_once = put_once  # type: ignore[method-assign]
        shared.drain.drain_transforms(lake)
    else:

        def at_staging(step: Step) -> None:
            if step == "staging":
                _die()

        shared.drain.load = lambda s, lk, run_id: _load(s, lk, run_id, at_staging)  # type: ignore[assignment]
        shared.drain.drain_loads(settings, lake)


if __name__ == "__main__":
    main(sys.argv[1])

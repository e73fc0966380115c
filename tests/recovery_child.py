"""A stage invocation killed by SIGKILL at a write boundary, in its own process (run by tests/test_recovery.py):
`python -m tests.recovery_child transform|load`, settings from the environment.

transform: killed after the run's curated files and state are written, before its manifest (the commit marker).
load: killed early in the load's transaction, after the curated files are staged.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import shared.drain
from shared.lake import Lake
from shared.load import _load
from shared.load.steps import Step
from shared.settings import load_settings


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(stage: str) -> None:
    """Drain `stage` and die at its boundary."""
    settings = load_settings(needs=("warehouse", "lake"))
    lake = Lake.from_settings(settings)
    if stage == "transform":
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

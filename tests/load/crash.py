"""A load that crashes inside its transaction right after a given step: the test seam, kept out of shared.load."""

from __future__ import annotations

import shared.load
from shared.lake import Lake
from shared.load import STEPS, Step
from shared.settings import Settings

__all__ = ["STEPS", "InjectedCrash", "load_crashing_after"]


class InjectedCrash(RuntimeError):
    """A crash simulated inside the load transaction."""


def load_crashing_after(settings: Settings, lake: Lake, run_id: str, step: str) -> shared.load.LoadResult:
    """shared.load.load, raising InjectedCrash right after `step` (one of STEPS), inside the transaction."""
    if step not in STEPS:
        raise ValueError(f"step {step!r} is not one of {STEPS}")

    def checkpoint(done: Step) -> None:
        if done == step:
            raise InjectedCrash(f"run {run_id}: crash injected after step {step!r}; the load rolls back")

    return shared.load._load(settings, lake, run_id, checkpoint)

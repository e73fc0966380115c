"""bench/load.py's floor (its own COPY of a run into bare tables, what `python -m bench load` sets the load
against) reads the curated files through the load's API: when that API changed, the benchmark broke unseen."""

from __future__ import annotations

from bench.load import child_copy
from tests.load.conftest import CuratedRuns
from tests.load.frames import base_run

RUN = "20240301T090500Z-b3c4d5"


def test_the_load_benchmarks_floor_copies_every_row_of_a_run(
    curated: CuratedRuns, warehouse_env: dict[str, str]
) -> None:
    run = base_run()
    curated.write(RUN, run)
    copied = child_copy(warehouse_env, RUN)
    assert copied["rows"] == sum(frame.height for frame in run.values())
    assert copied["duration_s"] > 0

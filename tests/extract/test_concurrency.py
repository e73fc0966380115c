"""Two extracts at the same moment: one runs, the other yields; no row duplicated, none missing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from azure.storage.blob import BlobLeaseClient

import shared.extract
from shared.extract import LEASE_BLOB, ExtractResult, extract
from shared.lake import Lake, LeaseLostError
from shared.settings import Settings
from tests.extract.runs import execute, manifests, read_run, state

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60  # a guard against a hang, never a measurement


def archived_orders(lake: Lake, names: list[str]) -> Counter[int]:
    """How many times each sales_order_id is archived by the runs `names`."""
    counts: Counter[int] = Counter()
    for name in names:
        _, frames = read_run(lake, name)
        if "sales_order" in frames:
            counts.update(frames["sales_order"].get_column("sales_order_id").to_list())
    return counts


def _race(settings: Settings, lake: Lake) -> list[ExtractResult | BaseException]:
    """Two extracts in two threads, started together; each one that gets to read waits until the other
    has returned, so the two certainly run at the same moment."""
    start, done = threading.Barrier(2), [threading.Event(), threading.Event()]
    results: list[ExtractResult | BaseException] = [RuntimeError("not run"), RuntimeError("not run")]
    reading = shared.extract._extract_tables

    def held(*args: object, **kwargs: object) -> None:
        me = 0 if threading.current_thread().name == "extract-0" else 1
        assert done[1 - me].wait(WAIT_S), "the other extract neither yielded nor finished"
        reading(*args, **kwargs)  # type: ignore[arg-type]

    def one(me: int) -> None:
        start.wait(WAIT_S)
        try:
            results[me] = extract(settings, lake)
        except BaseException as exc:
            results[me] = exc
        finally:
            done[me].set()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(shared.extract, "_extract_tables", held)
        threads = [threading.Thread(target=one, args=(i,), name=f"extract-{i}") for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S)
    return results


def test_two_extracts_at_the_same_moment_archive_each_change_once(
    extract_settings: Settings, lake: Lake, source_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    extract(extract_settings, lake)
    caplog.set_level(logging.INFO, logger="shared.extract")
    for attempt in range(3):
        ids = [attempt * 3 + i + 1 for i in range(3)]
        execute(
            source_db,
            "UPDATE sales_order SET units_sold = units_sold + 1, last_updated = now() "
            f"WHERE sales_order_id IN ({', '.join(map(str, ids))})",
        )
        before = set(manifests(lake))
        results = _race(extract_settings, lake)
        outcomes = [r for r in results if isinstance(r, ExtractResult)]
        assert len(outcomes) == 2, results
        assert sorted(r.yielded for r in outcomes) == [False, True]
        [ran] = [r for r in outcomes if not r.yielded]
        assert ran.watermark_advanced
        new = [m for m in manifests(lake) if m not in before]
        assert new == [ran.manifest]
        assert archived_orders(lake, new) == Counter(ids)  # each change once: no duplicate, none missing
    yielded = [r.getMessage() for r in caplog.records if "yielded" in r.getMessage()]
    assert len(yielded) == 3 and all(LEASE_BLOB in line for line in yielded)
    assert extract(extract_settings, lake).run_id is None  # and nothing left over for the next cycle


def test_the_lease_is_finite_and_released_after_a_run_or_a_crash(
    extract_settings: Settings, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = lake.blobs.get_blob_client(lake.raw, LEASE_BLOB)
    seen: list[tuple[str, str]] = []
    reading = shared.extract._extract_tables

    def observed(*args: object, **kwargs: object) -> None:
        lease = blob.get_blob_properties().lease
        seen.append((lease.state, lease.duration))
        reading(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shared.extract, "_extract_tables", observed)
    extract(extract_settings, lake)
    # Held for a fixed (finite) time while running: a killed extract's lease expires by itself.
    assert seen == [("leased", "fixed")]
    assert blob.get_blob_properties().lease.state == "available"

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated crash while reading")

    monkeypatch.setattr(shared.extract, "_extract_tables", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract(extract_settings, lake)
    assert blob.get_blob_properties().lease.state == "available"


def test_totes_extract_says_it_yielded(source_env: dict[str, str], lake: Lake) -> None:
    env = {**os.environ, **source_env, "WAREHOUSE_DB_URL": source_env["TOTESYS_DB_URL"]}
    with lake.lease(lake.raw, LEASE_BLOB) as held:  # another extract is running
        assert held is not None
        result = subprocess.run(
            [sys.executable, "-m", "shared.cli", "extract"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "yielded" in line]
    assert len(lines) == 2  # the log line and the command's own line
    assert "another extract is running" in lines[-1] and "nothing extracted" in lines[-1]
    assert manifests(lake) == []


def test_an_extract_that_loses_its_lease_commits_nothing(
    extract_settings: Settings, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = lake.blobs.get_blob_client(lake.raw, LEASE_BLOB)
    reading = shared.extract._extract_tables

    def stolen(*args: object, **kwargs: object) -> None:
        reading(*args, **kwargs)  # type: ignore[arg-type]
        # as if this run had stalled past its lease and another extract had taken it
        BlobLeaseClient(blob).break_lease(lease_break_period=0)
        BlobLeaseClient(blob).acquire(lease_duration=15)

    monkeypatch.setattr(shared.extract, "_extract_tables", stolen)
    with pytest.raises(LeaseLostError, match=r"lost the lease on \S*/_state/extract\.lease"):
        extract(extract_settings, lake)
    assert manifests(lake) == [] and state(lake) is None

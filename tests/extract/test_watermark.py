"""Watermark safety: a row stamped in the future never moves a watermark past the source clock."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

import pytest

from shared.extract import STATE_BLOB, extract
from shared.lake import Lake
from shared.settings import Settings
from tests.extract.runs import execute, read_run, state


def staff_ids(lake: Lake, manifest: str | None) -> list[int]:
    """staff_id of the staff rows a run archived, sorted (empty when the run has no staff file)."""
    assert manifest is not None
    _, frames = read_run(lake, manifest)
    return sorted(frames["staff"].get_column("staff_id").to_list()) if "staff" in frames else []


def watermark(lake: Lake, table: str) -> datetime:
    """The stored watermark of `table`."""
    current = state(lake)
    assert current is not None
    return datetime.fromisoformat(current["tables"][table])


def test_a_future_row_is_archived_every_cycle_and_never_hides_later_changes(
    extract_settings: Settings, lake: Lake, source_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    extract(extract_settings, lake)
    execute(
        source_db,
        "UPDATE staff SET first_name = 'Skewed', last_updated = now() + interval '1 year' WHERE staff_id = 1",
    )
    caplog.set_level(logging.WARNING, logger="shared.extract")

    skewed = extract(extract_settings, lake)

    assert staff_ids(lake, skewed.manifest) == [1]
    assert watermark(lake, "staff") <= skewed.extracted_at.replace(tzinfo=None)
    [warning] = [r.getMessage() for r in caplog.records if "stamped after the source clock" in r.getMessage()]
    assert "table staff" in warning and "staff_id 1 at " in warning
    future = datetime.fromisoformat(warning.split("staff_id 1 at ")[1].split(";")[0])
    assert future > skewed.extracted_at.replace(tzinfo=None) + timedelta(days=300)

    # Ordinary changes after it, in the same table, in the next cycles: each one is extracted.
    for cycle, staff_id in enumerate((2, 3), start=1):
        caplog.clear()
        execute(
            source_db, f"UPDATE staff SET first_name = 'Cycle{cycle}', last_updated = now() WHERE staff_id = {staff_id}"
        )
        result = extract(extract_settings, lake)
        assert result.rows["staff"] == 2
        # the changed row, and the future one again (with one warning naming it)
        assert staff_ids(lake, result.manifest) == [1, staff_id]
        assert sum("staff_id 1 at" in r.getMessage() for r in caplog.records) == 1
        assert watermark(lake, "staff") <= result.extracted_at.replace(tzinfo=None)
    _, frames = read_run(lake, str(result.manifest))
    assert frames["staff"].filter(staff_id=3).get_column("first_name").to_list() == ["Cycle2"]

    # Once the row's time is no longer in the future (here: its stamp set back), it is extracted as usual.
    execute(source_db, "UPDATE staff SET last_updated = now() WHERE staff_id = 1")
    assert staff_ids(lake, extract(extract_settings, lake).manifest) == [1]
    assert extract(extract_settings, lake).run_id is None


def test_a_watermark_already_past_the_clock_is_moved_back(
    extract_settings: Settings, lake: Lake, source_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    extract(extract_settings, lake)
    stored = lake.read_versioned(lake.raw, STATE_BLOB)
    assert stored.data is not None
    doc = json.loads(stored.data)
    ahead = datetime.fromisoformat(doc["tables"]["staff"]) + timedelta(days=3650)
    doc["tables"]["staff"] = ahead.isoformat()
    lake.write_versioned(lake.raw, STATE_BLOB, json.dumps(doc).encode(), stored.etag)
    execute(source_db, "UPDATE staff SET first_name = 'Seen', last_updated = now() WHERE staff_id = 4")
    caplog.set_level(logging.WARNING, logger="shared.extract")

    result = extract(extract_settings, lake)

    assert staff_ids(lake, result.manifest) == [4]
    assert watermark(lake, "staff") <= result.extracted_at.replace(tzinfo=None)
    assert any("watermark of table staff" in r.getMessage() for r in caplog.records)

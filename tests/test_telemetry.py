"""OpenTelemetry: one pipeline cycle is one connected trace, with every named metric.

The spans and metrics go to the OpenTelemetry SDK's in-memory span exporter and metric reader; the
pipeline runs in-process on the real PostgreSQL and Azurite of the fixtures, and through the three
functions of function_app.py with real binding objects, as the Functions host calls them.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import telemetry
from shared.errors import TransientError
from shared.lake import Lake
from shared.pipeline import run_cycle
from shared.settings import Settings

STAGES = ("extract", "transform", "load")
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Telemetry:
    """What the pipeline emitted: finished spans and collected metric points."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """Finished spans, all or those named `name`."""
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def span(self, name: str) -> ReadableSpan:
        """The one finished span named `name`."""
        [found] = self.spans(name)
        return found

    def points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Metric name -> [(attributes, point)] collected so far."""
        found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        found.setdefault(metric.name, []).append((dict(point.attributes or {}), point))
        return found


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    """The pipeline's spans and metrics captured in memory for one test."""
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    with telemetry.use_providers(tracer_provider, meter_provider):
        yield Telemetry(exporter, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


def traceparent_of(span: ReadableSpan) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def assert_one_connected_trace(captured: Telemetry, run_id: str) -> dict[str, ReadableSpan]:
    """Every span is in the extract's trace; transform and load are the extract's children; table spans
    are their stage's children; all carry run_id. Returns the stage spans."""
    stages = {stage: captured.span(f"totes.{stage}") for stage in STAGES}
    extract = stages["extract"].get_span_context()
    assert stages["extract"].parent is None, "the extract starts the run's trace"
    for stage in ("transform", "load"):
        parent = stages[stage].parent
        assert parent is not None and parent.span_id == extract.span_id, f"{stage} is a child of the extract"
    spans = captured.spans()
    assert {s.context.trace_id for s in spans} == {extract.trace_id}, "one trace per run"
    for stage, span in stages.items():
        assert span.attributes is not None and span.attributes["run_id"] == run_id
        tables = captured.spans(f"totes.{stage}.table")
        assert tables, f"no per-table spans in {stage}"
        for table in tables:
            assert table.parent is not None and table.parent.span_id == span.get_span_context().span_id
            assert table.attributes is not None and table.attributes["run_id"] == run_id and table.attributes["table"]
    return stages


def table_rows(captured: Telemetry, stage: str) -> dict[str, int]:
    """Rows per table as the stage's table spans carry them."""
    found = {}
    for span in captured.spans(f"totes.{stage}.table"):
        assert span.attributes is not None
        if "rows" in span.attributes:
            found[str(span.attributes["table"])] = int(str(span.attributes["rows"]))
    return found


def test_one_pipeline_cycle_is_one_connected_trace_with_rows_and_bytes(
    otel: Telemetry, settings: Settings, lake: Lake
) -> None:
    cycle = run_cycle(settings, lake)
    assert cycle.run_id is not None and cycle.transform is not None and cycle.load is not None

    stages = assert_one_connected_trace(otel, cycle.run_id)
    extract = stages["extract"].attributes
    assert extract is not None
    assert extract["rows"] == sum(cycle.extract.rows.values()) and extract["bytes"] == cycle.extract.bytes
    assert extract["outcome"] == "changes"
    assert table_rows(otel, "extract") == {t: n for t, n in cycle.extract.rows.items() if n}
    assert all(
        s.attributes and int(str(s.attributes["bytes"])) > 0 for s in otel.spans("totes.extract.table") if s.attributes
    )
    assert table_rows(otel, "transform") == cycle.transform.rows
    loaded = table_rows(otel, "load")
    assert loaded and all(cycle.load.rows[t] == n for t, n in loaded.items())
    # The trace travels in the lake: the raw and curated manifests carry the extract's traceparent.
    extract_trace = traceparent_of(stages["extract"])
    assert lake.read_json(lake.raw, f"_runs/{cycle.run_id}.json")["traceparent"] == extract_trace
    assert lake.read_json(lake.curated, f"_runs/{cycle.run_id}.json")["traceparent"] == extract_trace
    assert json.loads(cycle.transform.load_message or "") == {"run_id": cycle.run_id, "traceparent": extract_trace}

    points = otel.points()
    rows = {(a["stage"], a["table"]): p.value for a, p in points[telemetry.ROWS]}
    for stage, result_rows in (("extract", cycle.extract.rows), ("transform", cycle.transform.rows)):
        assert {t: n for (s, t), n in rows.items() if s == stage} == {t: n for t, n in result_rows.items() if n}
    assert {t: n for (s, t), n in rows.items() if s == "load"} == {t: n for t, n in cycle.load.rows.items() if n}
    durations = {(a["stage"], a["outcome"]): p.count for a, p in points[telemetry.STAGE_DURATION]}
    assert durations == {("extract", "changes"): 1, ("transform", "transformed"): 1, ("load", "loaded"): 1}
    [(_, lag)] = points[telemetry.FRESHNESS_LAG]
    assert lag.count == 1 and cycle.load.lag_s is not None and lag.sum == pytest.approx(cycle.load.lag_s)
    backlog = {a["stage"]: p.value for a, p in points[telemetry.BACKLOG]}
    assert backlog == {"transform": 0, "load": 0}, "after a whole cycle nothing waits"


class Output(func.Out[str]):
    """The worker's output binding as the function sees it."""

    def __init__(self) -> None:
        self.value: str | None = None

    def set(self, val: str) -> None:
        self.value = val

    def get(self) -> str:
        assert self.value is not None
        return self.value


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, lake_env: dict[str, str], settings: Settings) -> dict[str, str]:
    """The environment the Functions host gives the app: the fixtures' source, warehouse and lake."""
    assert settings.totesys_db_url is not None and settings.warehouse_db_url is not None
    env = {
        **lake_env,
        "TOTESYS_DB_URL": settings.totesys_db_url.reveal(),
        "WAREHOUSE_DB_URL": settings.warehouse_db_url.reveal(),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def call_transform(functions: dict[str, Any], lake: Lake, run_id: str, data: bytes | None = None) -> Output:
    name = f"{lake.raw}/_runs/{run_id}.json"
    data = lake.get(lake.raw, f"_runs/{run_id}.json") if data is None else data
    msg = Output()
    functions["transform"].get_user_function()(func.blob.InputStream(name=name, data=data, uri=f"http://x/{name}"), msg)
    return msg


def test_the_trace_crosses_the_three_functions_and_every_metric_is_recorded(
    otel: Telemetry,
    registered_functions: dict[str, Any],
    app_env: dict[str, str],
    lake: Lake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered_functions["extract"].get_user_function()(TimerRequest(past_due=False))
    [manifest] = list(lake.list(lake.raw, "_runs/"))
    run_id = manifest.removeprefix("_runs/").removesuffix(".json")
    waiting = {a["stage"]: p.value for a, p in otel.points()[telemetry.BACKLOG]}
    assert waiting == {"transform": 1, "load": 0}, "the extract's tick measures the backlog"

    msg = call_transform(registered_functions, lake, run_id)
    message = json.loads(msg.get())
    extract_trace = traceparent_of(otel.span("totes.extract"))
    assert message == {"run_id": run_id, "traceparent": extract_trace}, "the load message carries the trace"

    registered_functions["load"].get_user_function()(QueueMessage(id="m1", body=msg.get().encode(), dequeue_count=1))
    assert_one_connected_trace(otel, run_id)

    # A quarantined run, an unusable load message, and a message whose retries ran out.
    bad_run = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-bad001"  # the drains list run manifests up to this month
    lake.put_once(lake.raw, f"_runs/{bad_run}.json", b"{not json")
    assert call_transform(registered_functions, lake, bad_run, b"{not json").value is None
    registered_functions["load"].get_user_function()(QueueMessage(id="m2", body=b"{not json", dequeue_count=1))
    monkeypatch.setenv("WAREHOUSE_DB_URL", "postgresql://nobody@127.0.0.1:1/warehouse")
    with pytest.raises(TransientError):
        registered_functions["load"].get_user_function()(
            QueueMessage(id="m3", body=msg.get().encode(), dequeue_count=5)
        )

    points = otel.points()
    assert set(points) == set(telemetry.METRIC_NAMES), "every named metric is recorded"
    assert [p.value for _, p in points[telemetry.QUARANTINED]] == [1]
    assert {a["reason"]: p.value for a, p in points[telemetry.POISON]} == {"unusable": 1, "retries_exhausted": 1}
    outcomes = {(a["stage"], a["outcome"]) for a, _ in points[telemetry.STAGE_DURATION]}
    assert {("transform", "quarantined"), ("load", "retry")} <= outcomes
    ages = {a["stage"]: p.value for a, p in points[telemetry.BACKLOG_AGE]}
    assert set(ages) == {"transform", "load"} and ages["transform"] > 0, "the waiting run's age"


def test_a_retried_load_stays_in_the_run_trace(otel: Telemetry, settings: Settings, lake: Lake) -> None:
    cycle = run_cycle(settings, lake)
    assert cycle.run_id is not None
    otel.exporter.clear()
    from shared.load import load

    again = load(settings, lake, cycle.run_id)  # e.g. `totes load RUN_ID`: the curated manifest has the trace
    assert again.already_loaded
    extract_trace = lake.read_json(lake.raw, f"_runs/{cycle.run_id}.json")["traceparent"]
    span = otel.span("totes.load")
    assert span.parent is not None and f"{span.parent.span_id:016x}" == extract_trace.split("-")[2]
    assert span.attributes is not None and span.attributes["outcome"] == "already_loaded"


def test_nothing_is_traced_or_written_without_providers(settings: Settings, lake: Lake) -> None:
    cycle = run_cycle(settings, lake)
    assert "traceparent" not in lake.read_json(lake.raw, f"_runs/{cycle.run_id}.json")
    assert cycle.transform is not None and json.loads(cycle.transform.load_message or "") == {"run_id": cycle.run_id}


def test_custom_dimensions_become_flat_log_attributes() -> None:
    record = logging.LogRecord("shared.extract", logging.INFO, __file__, 1, "extract run_id=%s", ("r1",), None)
    record.custom_dimensions = {"run_id": "r1", "rows_total": 3, "watermark_advanced": True, "nested": {"a": 1}}
    assert telemetry.flatten_custom_dimensions(record) is True
    assert (record.run_id, record.rows_total, record.watermark_advanced) == ("r1", 3, True)
    assert record.nested == "{'a': 1}", "only primitives are exported: others as text"
    assert not hasattr(record, "custom_dimensions")


def run_python(code: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("connection_strings", "expected"),
    [
        ([None, ""], "configured=False calls=0 filtered=False"),
        (
            ["InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"] * 2,
            "configured=True calls=1 filtered=True",
        ),
    ],
)
def test_azure_monitor_is_configured_once_and_only_with_a_connection_string(
    connection_strings: Sequence[str | None], expected: str
) -> None:
    # A fresh interpreter: configure_azure_monitor installs process-wide providers.
    out = run_python(
        f"""
        import azure.monitor.opentelemetry as distro
        from shared import telemetry
        calls = []
        real = distro.configure_azure_monitor
        distro.configure_azure_monitor = lambda **kw: (calls.append(kw), real(**kw, disable_offline_storage=True))
        results = [telemetry.configure(cs) for cs in {list(connection_strings)!r}]
        import logging
        filtered = any(telemetry.flatten_custom_dimensions in h.filters for h in logging.getLogger().handlers)
        print(f"configured={{results[-1]}} calls={{len(calls)}} filtered={{filtered}}")
        """
    )
    assert out.strip() == expected


def test_function_app_configures_telemetry_at_import_from_the_setting() -> None:
    code = """
        import azure.monitor.opentelemetry as distro
        calls = []
        distro.configure_azure_monitor = lambda **kw: calls.append(kw)
        import function_app
        print(calls)
        """
    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
    base = {k: v for k, v in os.environ.items() if k != "APPLICATIONINSIGHTS_CONNECTION_STRING"}
    assert run_python(code, base).strip() == "[]"
    assert connection in run_python(code, {**base, "APPLICATIONINSIGHTS_CONNECTION_STRING": connection})


def test_the_poison_count_follows_the_hosts_max_dequeue_count() -> None:
    import function_app

    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["queues"]["maxDequeueCount"] == function_app.MAX_DEQUEUE_COUNT


def test_a_failed_trace_look_up_starts_a_new_trace_instead_of_failing(otel: Telemetry) -> None:
    def unreadable() -> str | None:
        raise TransientError("lake storage unreachable")

    with telemetry.stage_span("load", "r1", traceparent=unreadable) as span:
        span.finish("loaded", {"dim_staff": 2, "fact_sales_order": 0})
    load = otel.span("totes.load")
    assert load.parent is None and load.attributes is not None and load.attributes["rows"] == 2
    assert [(a, p.value) for a, p in otel.points()[telemetry.ROWS]] == [({"stage": "load", "table": "dim_staff"}, 2)]


@pytest.mark.parametrize(
    "document", [b"{not json", {"traceparent": 7}, {"traceparent": "00-bad"}, {"run_id": "r"}, ["traceparent"]]
)
def test_a_missing_or_bad_traceparent_means_a_new_trace(document: Any) -> None:
    value = telemetry.traceparent_in(document)
    assert telemetry.parent_context(value) is None

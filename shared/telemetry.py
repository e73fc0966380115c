"""OpenTelemetry for the pipeline: one trace per run, spans per stage and per table, and its metrics.

`configure` sends them to Azure Monitor (azure-monitor-opentelemetry) once per process when
APPLICATIONINSIGHTS_CONNECTION_STRING is set, and does nothing otherwise; the spans and metrics below go
to whatever providers are installed (none: no-ops; the tests install in-memory ones).

One trace per run: the extract's span starts it and its W3C `traceparent` travels in the raw run manifest,
the curated run manifest and the load message (field TRACEPARENT), so the transform's and the load's spans
are children of the extract's, across the three functions.

Span names: totes.extract, totes.transform, totes.load (one per stage call) and totes.extract.table,
totes.transform.table, totes.load.table (one per table), with the attributes run_id, table, rows, bytes.
Metric names are the constants below; infra/kql queries them by name (tests check both agree).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, Literal

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.errors import TransientError

log = logging.getLogger(__name__)

Stage = Literal["extract", "transform", "load"]
TRACER = "totes"
TRACEPARENT = "traceparent"  # the field of the run manifests and the load message that carries the trace

# Metric names (Application Insights customMetrics `name`; the alerts and the workbook query them).
ROWS = "totes.rows"  # counter: rows per table per stage (attributes stage, table)
STAGE_DURATION = "totes.stage.duration"  # histogram, s: one per stage call (attributes stage, outcome)
FRESHNESS_LAG = "totes.freshness.lag"  # histogram, s: newest source commit of a run -> its warehouse commit
BACKLOG = "totes.backlog"  # gauge: runs waiting for a stage (attribute stage: transform | load)
BACKLOG_AGE = "totes.backlog.age"  # gauge, s: age of the oldest run waiting for a stage (attribute stage)
QUARANTINED = "totes.runs.quarantined"  # counter: runs the transform quarantined
POISON = "totes.load.poison"  # counter: load messages gone to the poison queue (attribute reason)
METRIC_NAMES = (ROWS, STAGE_DURATION, FRESHNESS_LAG, BACKLOG, BACKLOG_AGE, QUARANTINED, POISON)

_propagator = TraceContextTextMapPropagator()
_configured: list[str] = []  # the connection string configured, once per process
# Providers used instead of the global ones while `use_providers` is active (tests: in-memory exporters).
_providers: dict[str, Any] = {}
# The run being worked on by the current stage call: its id and the traceparent of its trace.
_run_id: ContextVar[str | None] = ContextVar("totes_run_id", default=None)
_run_trace: ContextVar[str | None] = ContextVar("totes_run_trace", default=None)


def configure(connection_string: str | None) -> bool:
    """Send traces, metrics and logs to Azure Monitor once per process when `connection_string` is set.

    Returns whether telemetry goes to Azure Monitor. Log records' `custom_dimensions` become attributes.
    """
    if _configured or not connection_string:
        return bool(_configured)
    from azure.monitor.opentelemetry import configure_azure_monitor

    configure_azure_monitor(connection_string=connection_string)
    for handler in logging.getLogger().handlers:
        if type(handler).__module__.startswith("opentelemetry"):
            handler.addFilter(flatten_custom_dimensions)
    _configured.append(connection_string)
    return True


def flatten_custom_dimensions(record: logging.LogRecord) -> bool:
    """A logging filter: `extra={"custom_dimensions": {...}}` as flat record attributes (exported as such)."""
    dimensions = record.__dict__.pop("custom_dimensions", None)
    if isinstance(dimensions, Mapping):
        for key, value in dimensions.items():
            record.__dict__.setdefault(str(key), value if isinstance(value, str | bool | int | float) else str(value))
    return True


class SpanHandle:
    """A stage's or table's span: attributes as the work learns them, and the stage's outcome."""

    def __init__(self, span: trace.Span, stage: Stage) -> None:
        self.span = span
        self.stage = stage
        self.outcome: str | None = None

    @property
    def run_trace(self) -> str | None:
        """The traceparent of the run's trace (the extract's span), to carry on to the next stage."""
        return _run_trace.get()

    def set(self, **attributes: str | int | float | None) -> None:
        """Set span attributes (None values are skipped); `run_id` also names the run for table spans."""
        for key, value in attributes.items():
            if value is not None:
                self.span.set_attribute(key, value)
        if attributes.get("run_id"):
            _run_id.set(str(attributes["run_id"]))

    def finish(
        self, outcome: str, rows: Mapping[str, int], *, bytes: int | None = None, run_id: str | None = None
    ) -> None:
        """The stage's result: its outcome, rows per table (metric totes.rows) and total rows and bytes."""
        self.outcome = outcome
        self.set(outcome=outcome, run_id=run_id, rows=sum(rows.values()), bytes=bytes)
        counter = _instruments().rows
        for table, count in rows.items():
            if count:
                counter.add(count, {"stage": self.stage, "table": table})


@contextmanager
def use_providers(tracer_provider: trace.TracerProvider, meter_provider: metrics.MeterProvider) -> Iterator[None]:
    """Send the pipeline's spans and metrics to these providers instead of the global ones, for a while."""
    _providers.update(tracer=tracer_provider, meter=meter_provider)
    try:
        yield
    finally:
        _providers.clear()


def _tracer() -> trace.Tracer:
    provider = _providers.get("tracer") or trace.get_tracer_provider()
    return provider.get_tracer(TRACER)


@contextmanager
def stage_span(
    stage: Stage, run_id: str | None = None, *, traceparent: str | Callable[[], str | None] | None = None
) -> Iterator[SpanHandle]:
    """Span totes.<stage> around one stage call, a child of `traceparent` (the run's trace) when given.

    `traceparent` may be a function, called only when tracing is on (it may read the lake). The stage's
    duration is recorded (totes.stage.duration) with its outcome: the one `finish` gave, `retry` for a
    TransientError, `failed` for any other error.
    """
    parent_traceparent = _resolve(traceparent)
    parent = parent_context(parent_traceparent)
    started = time.perf_counter()
    outcome = "failed"
    with _tracer().start_as_current_span(f"totes.{stage}", context=parent) as span:
        handle = SpanHandle(span, stage)
        run_token = _run_id.set(run_id)
        trace_token = _run_trace.set(parent_traceparent or current())
        handle.set(run_id=run_id, stage=stage)
        try:
            yield handle
            outcome = handle.outcome or "done"
        except TransientError:
            outcome = "retry"
            raise
        finally:
            _run_trace.reset(trace_token)
            _run_id.reset(run_token)
            span.set_attribute("outcome", outcome)
            _instruments().duration.record(time.perf_counter() - started, {"stage": stage, "outcome": outcome})
    flush()


def _resolve(traceparent: str | Callable[[], str | None] | None) -> str | None:
    """A traceparent, looked up only when tracing is on; a failed look-up starts a new trace instead."""
    if not callable(traceparent):
        return traceparent
    if not tracing_enabled():
        return None
    try:
        return traceparent()
    except Exception as exc:  # telemetry never fails a stage; the stage reports its own storage errors
        log.warning("run trace not read (%s: %s); this stage starts a new trace", type(exc).__name__, exc)
        return None


@contextmanager
def table_span(stage: Stage, table: str, run_id: str | None = None) -> Iterator[SpanHandle]:
    """Span totes.<stage>.table around one table's work in a stage; set rows and bytes on the handle."""
    with _tracer().start_as_current_span(f"totes.{stage}.table") as span:
        handle = SpanHandle(span, stage)
        handle.set(stage=stage, table=table, run_id=run_id or _run_id.get())
        yield handle


def trace_fields() -> dict[str, str]:
    """{"traceparent": ...} of the run the current stage works on (its extract's span), or {} untraced."""
    value = _run_trace.get() or current()
    return {TRACEPARENT: value} if value else {}


def current() -> str | None:
    """The W3C traceparent of the current span, or None when nothing is traced."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get(TRACEPARENT)


def parent_context(traceparent: str | None) -> Context | None:
    """The OpenTelemetry context of a W3C traceparent (None for none or an invalid one: a new trace)."""
    if not traceparent:
        return None
    context = _propagator.extract({TRACEPARENT: traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def traceparent_in(document: Any) -> str | None:
    """The traceparent field of a manifest or load message (a dict, JSON text or bytes), or None."""
    import json

    if isinstance(document, bytes | str):
        try:
            document = json.loads(document)
        except ValueError:
            return None
    value = document.get(TRACEPARENT) if isinstance(document, dict) else None
    return value if isinstance(value, str) else None


def tracing_enabled() -> bool:
    """Whether spans are recorded (a tracer provider is installed), so looking up a parent is worth it."""
    provider = _providers.get("tracer") or trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def metrics_enabled() -> bool:
    """Whether metrics go anywhere (Azure Monitor configured, or providers in use), so measuring one is worth it."""
    return bool(_configured) or "meter" in _providers


def record_lag(seconds: float) -> None:
    """Freshness lag of a loaded run: its newest source commit -> its warehouse commit (totes.freshness.lag)."""
    _instruments().lag.record(seconds)


def record_backlog(waiting: Mapping[str, int], oldest_s: Mapping[str, float | None]) -> None:
    """Runs waiting per stage and the age of the oldest (totes.backlog, totes.backlog.age)."""
    instruments = _instruments()
    for stage, count in waiting.items():
        instruments.backlog.set(count, {"stage": stage})
        instruments.backlog_age.set(oldest_s.get(stage) or 0.0, {"stage": stage})
    flush()


def flush(timeout_ms: int = 5_000) -> None:
    """Export what is buffered now when Azure Monitor is configured: a Functions instance may be frozen or
    reclaimed right after an invocation, before the periodic export (every 60 s) would run."""
    if not _configured:
        return
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            try:
                force_flush(timeout_ms)
            except Exception as exc:  # telemetry must never fail the pipeline
                log.warning("telemetry flush failed: %s: %s", type(exc).__name__, exc)


def record_quarantine() -> None:
    """A run was quarantined by the transform (totes.runs.quarantined)."""
    _instruments().quarantined.add(1)


def record_poison(reason: Literal["unusable", "retries_exhausted"]) -> None:
    """A load message went to the poison queue (totes.load.poison): unusable at once, or after its retries."""
    _instruments().poison.add(1, {"reason": reason})
    flush()


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        self.rows = meter.create_counter(ROWS, unit="{row}", description="rows per table per stage")
        self.duration = meter.create_histogram(STAGE_DURATION, unit="s", description="duration of a stage call")
        self.lag = meter.create_histogram(
            FRESHNESS_LAG, unit="s", description="source commit to warehouse commit of a loaded run"
        )
        self.backlog = meter.create_gauge(BACKLOG, unit="{run}", description="runs waiting for a stage")
        self.backlog_age = meter.create_gauge(BACKLOG_AGE, unit="s", description="age of the oldest run waiting")
        self.quarantined = meter.create_counter(QUARANTINED, unit="{run}", description="runs quarantined")
        self.poison = meter.create_counter(POISON, unit="{message}", description="load messages sent to poison")


def _instruments() -> _Instruments:
    return _instruments_of(_providers.get("meter") or metrics.get_meter_provider())


@lru_cache(maxsize=8)
def _instruments_of(provider: metrics.MeterProvider) -> _Instruments:
    return _Instruments(provider.get_meter(TRACER))

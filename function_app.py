"""Azure Functions entry point (Python v2 model): triggers only, each a thin adapter into `shared`."""

import logging

import azure.functions as func

import shared.extract
from shared import redact, telemetry
from shared.backlog import record_backlog
from shared.drain import drain_backlog, drain_blob, drain_message
from shared.errors import TerminalError
from shared.lake import Lake
from shared.load import send_to_poison
from shared.reconcile import reconcile as reconcile_source
from shared.settings import load_settings, telemetry_connection_string, transform_trigger_source

# Every log line of this app is scrubbed of passwords and storage keys (the worker's handler included).
redact.install()
# Traces, metrics and logs to Azure Monitor when APPLICATIONINSIGHTS_CONNECTION_STRING is set, once per worker.
telemetry.configure(telemetry_connection_string())
# host.json extensions.queues.maxDequeueCount: the host moves a message to poison after this many failures.
MAX_DEQUEUE_COUNT = 5
app = func.FunctionApp()


# The host parses a blob trigger's `source` as an enum (no %SETTING% there), so it is read at indexing:
# EventGrid in Azure, LogsAndContainerScan (polling) for func start on Azurite.
@app.function_name("transform")
@app.blob_trigger(
    arg_name="manifest",
    path="%RAW_CONTAINER%/_runs/{name}.json",
    connection="LAKE_STORAGE",
    source=func.BlobSource(transform_trigger_source()),
)
@app.queue_output(arg_name="msg", queue_name="%LOAD_QUEUE%", connection="LAKE_STORAGE")
def transform(manifest: func.InputStream, msg: func.Out[str]) -> None:
    """A raw run manifest landed: drain the transform backlog in run order (this run included) and queue a load."""
    drained = drain_blob(manifest.name or "")
    if drained.load_message is not None:
        msg.set(drained.load_message)
    logging.info(drained.summary())


@app.function_name("load")
@app.queue_trigger(arg_name="msg", queue_name="%LOAD_QUEUE%", connection="LAKE_STORAGE")
def load(msg: func.QueueMessage) -> None:
    """A load-jobs message: drain the load backlog in run order (one transaction per run), its run included.

    Unusable input (bad message, unknown run, bad files) goes to the poison queue at once instead of
    five retries; a TransientError (warehouse down, dimension rows not loaded yet) raises so the host retries.
    """
    body = msg.get_body().decode("utf-8", errors="replace")
    settings = load_settings(needs=("warehouse", "lake"))
    lake = Lake.from_settings(settings)
    try:
        drain_message(settings, lake, body)  # every curated run not in the ledger, oldest first; logs TOTES_LOAD_OK
    except TerminalError as exc:
        logging.error("TOTES_LOAD_POISON %s; message moved to %s, not retried", exc, settings.poison_queue)
        send_to_poison(settings, lake, body)
        telemetry.record_poison("unusable")
    except Exception:  # a TransientError, or a bug: the host retries, and moves it to poison after the last try
        if (msg.dequeue_count or 0) >= MAX_DEQUEUE_COUNT:
            telemetry.record_poison("retries_exhausted")
        raise


@app.function_name("extract")
@app.timer_trigger(schedule="%EXTRACT_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def extract(timer: func.TimerRequest) -> None:
    """A tick of EXTRACT_SCHEDULE: finish the backlog (a lost event is repaired here), then one extract run."""
    settings = load_settings(needs=("source", "warehouse", "lake"))
    lake = Lake.from_settings(settings)
    drain_backlog(settings, lake)  # every pending transform, then load, oldest first; a failure is logged
    result = shared.extract.extract(settings, lake)  # logs the run summary
    record_backlog(lake, settings)  # runs waiting per stage, every tick (the ledger too where WAREHOUSE_DB_URL is set)
    logging.info(
        "extract trigger: run_id=%s rows=%d past_due=%s duration_s=%.2f",
        result.run_id or ("none (yielded to a running extract)" if result.yielded else "none (no changes)"),
        sum(result.rows.values()),
        timer.past_due,
        result.duration_s,
    )


@app.function_name("reconcile")
@app.timer_trigger(schedule="%RECONCILE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def reconcile(timer: func.TimerRequest) -> None:
    """A tick of RECONCILE_SCHEDULE: compare the source with the raw archive; differences become a correction run."""
    settings = load_settings(needs=("source", "lake"))
    result = reconcile_source(settings, Lake.from_settings(settings))  # logs per table and the summary
    logging.info("reconcile trigger: run_id=%s past_due=%s", result.run_id or "none", timer.past_due)

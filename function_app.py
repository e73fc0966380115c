"""Azure Functions entry point (Python v2 model): triggers only, each a thin adapter into `shared`."""

import logging

import azure.functions as func

import shared.extract
from shared.lake import Lake
from shared.settings import load_settings, transform_trigger_source
from shared.transform.stage import transform_blob

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
    """A raw run manifest landed: transform the run and queue its load (unless it was quarantined)."""
    outcome = transform_blob(manifest.name or "")
    if outcome.load_message is not None:
        msg.set(outcome.load_message)
    logging.info(outcome.summary())


@app.function_name("extract")
@app.timer_trigger(schedule="%EXTRACT_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def extract(timer: func.TimerRequest) -> None:
    """A tick of EXTRACT_SCHEDULE: one extract run, source changes -> raw lake (LAKE_STORAGE)."""
    settings = load_settings(needs=("source", "lake"))
    result = shared.extract.extract(settings, Lake.from_settings(settings))  # logs the run summary
    logging.info(
        "extract trigger: run_id=%s rows=%d past_due=%s duration_s=%.2f",
        result.run_id or "none (no changes)",
        sum(result.rows.values()),
        timer.past_due,
        result.duration_s,
    )

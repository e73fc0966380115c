"""local.settings.json for `func start`: the Functions host's settings pointed at the local stack.

Local-only tooling (kept out of the deploy package by .funcignore), written by `totes up`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# What `func start` needs beyond the stack's URLs; values already in the file win over these.
FUNC_DEFAULTS = {
    "FUNCTIONS_WORKER_RUNTIME": "python",
    "TRANSFORM_TRIGGER_SOURCE": "LogsAndContainerScan",
    "RAW_CONTAINER": "raw",
    "CURATED_CONTAINER": "curated",
    "LOAD_QUEUE": "load-jobs",
    "EXTRACT_SCHEDULE": "0 */5 * * * *",
    "RECONCILE_SCHEDULE": "0 30 2 * * *",
    "EXTRACT_LOOKBACK": "10m",
}
# Settings `totes up` owns: rewritten on every run, because the stack's ports change when it restarts.
STACK_KEYS = ("AzureWebJobsStorage", "LAKE_STORAGE", "TOTESYS_DB_URL", "WAREHOUSE_DB_URL")


def local_settings(stack: Mapping[str, str], existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The local.settings.json document: `existing` (if any) with the stack's settings in `Values`.

    `stack` holds TOTESYS_DB_URL, WAREHOUSE_DB_URL and LAKE_STORAGE; the Functions host's own storage
    (AzureWebJobsStorage) is the same Azurite as the lake.
    """
    document = dict(existing or {})
    values = {**FUNC_DEFAULTS, **dict(document.get("Values") or {})}
    values.update({key: stack[key] for key in STACK_KEYS if key in stack})
    values["AzureWebJobsStorage"] = stack["LAKE_STORAGE"]
    document["IsEncrypted"] = False
    document["Values"] = values
    return document


def write_local_settings(path: Path, stack: Mapping[str, str]) -> Path:
    """Write (or update in place) the local.settings.json at `path` for the stack's settings."""
    existing = json.loads(path.read_text()) if path.exists() else None
    path.write_text(json.dumps(local_settings(stack, existing), indent=2) + "\n")
    return path

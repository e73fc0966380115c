"""The transform stage: one extracted run of source rows -> rows of the three star schemas.

Pure modules (frames in, frames out; no I/O, no clock): `builders` (one function per star table),
`model` (`build_run`, the one orchestration of the builders, `transform_run` over in-memory frames, and the
order-insensitive state merge), `hashing`; the columns read and written are in shared.contract. I/O:
`stage.transform` reads a raw run from the lake and writes the curated run (with `raw`, which also holds the
strict checks of text dates, `outputs`, `store` and `quarantine`); the trigger and the CLI call it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.transform.model import TransformResult, transform_run
    from shared.transform.stage import TransformOutcome, transform

__all__ = ["TransformOutcome", "TransformResult", "transform", "transform_run"]
_MODULES = {
    "TransformOutcome": "shared.transform.stage",
    "transform": "shared.transform.stage",
    "TransformResult": "shared.transform.model",
    "transform_run": "shared.transform.model",
}


def __getattr__(name: str) -> Any:
    """The public names, imported on first use: importing a pure module never loads the storage SDK."""
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_MODULES[name]), name)

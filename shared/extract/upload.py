"""Raw files uploaded write-once in the background, one at a time and in order, while the extract reads the
next table: a run's reads and its storage round trips overlap instead of adding up.

The order of the writes is kept (each waits for the one before it) and the first failure stops them: no
upload starts after one failed, and `wait` raises that failure, so a failing run writes exactly what a
sequential one would have before it stopped, and never its manifest."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

from shared.contract import PARQUET_TYPE
from shared.lake import Lake


class RawUploads:
    """A context of background uploads of local Parquet files into the raw container (each file is deleted
    once uploaded); leaving it waits for the upload under way and starts no other."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="totes-extract-upload")
        self._uploads: list[Future[None]] = []
        self._stopped = threading.Event()

    def __enter__(self) -> RawUploads:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopped.set()  # an error in the run: whatever was not started yet is not written
        self._pool.shutdown(wait=True)

    def put(self, name: str, path: Path) -> None:
        """Upload `path` as blob `name` once the uploads before it are done; raise an earlier one's failure."""
        self.check()
        self._uploads.append(self._pool.submit(self._upload, name, path))

    def check(self) -> None:
        """Raise the failure of an upload that has finished, if one failed."""
        for upload in self._uploads:
            if upload.done():
                upload.result()

    def wait(self) -> None:
        """Wait for every upload; raise the first failure."""
        for upload in self._uploads:
            upload.result()

    def _upload(self, name: str, path: Path) -> None:
        if self._stopped.is_set():
            return
        try:
            with path.open("rb") as stream:
                self.lake.put_once(self.lake.raw, name, stream, PARQUET_TYPE)
        except BaseException:
            self._stopped.set()
            raise
        path.unlink()

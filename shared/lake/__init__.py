"""Blob and queue I/O for the lake: write-once data blobs, ETag-guarded state, the load queue.

Blob API only (azure-storage-blob): it works on ADLS Gen2 with hierarchical namespace and on Azurite.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContentSettings, LinearRetry
from azure.storage.queue import LinearRetry as QueueLinearRetry
from azure.storage.queue import QueueServiceClient

from shared.errors import TerminalError, TransientError
from shared.redact import describe
from shared.settings import Settings

SETTING = "LAKE_STORAGE"
# Tries of one storage request: azure-core's default (10 tries, backoff from 15 s) waits about 90 s on a
# storage that is down; three tries, one second apart, and STORAGE_TIMEOUT to connect fail within seconds.
RETRY_TOTAL = 2
RETRY_BACKOFF_S = 1
# A blob lease's longest finite duration: a holder killed without releasing it blocks others this long.
LEASE_SECONDS = 60

log = logging.getLogger(__name__)
# Azure SDK request logs are noisy at INFO and echo URLs; keep them to warnings.
logging.getLogger("azure").setLevel(logging.WARNING)


class BlobExistsError(TerminalError):
    """A write-once blob already exists: the lake never overwrites data."""


class ConcurrentUpdateError(TransientError):
    """A state blob changed since it was read (ETag mismatch): another invocation won; retry later."""


@dataclass(frozen=True)
class Versioned:
    """A blob's bytes with the ETag they were read at (None, None when the blob does not exist)."""

    data: bytes | None
    etag: str | None


@functools.cache
def io_pool(purpose: str, workers: int) -> ThreadPoolExecutor:
    """The process's pool of `workers` threads for one kind of storage round trip (`purpose`), made on first
    use and kept: a thread's start cost 1-3 ms here, and a cycle's stages started 55 of them for pools
    they dropped at once (0.1 s of a 0.8 s incremental cycle at x10). A task never waits on its own pool
    (each caller has its own purpose), so callers sharing one, such as concurrent invocations, only queue."""
    return ThreadPoolExecutor(workers, thread_name_prefix=f"totes-{purpose}")


class Lake:
    """The lake's containers and the load queue, behind a small write-once/ETag API."""

    def __init__(
        self,
        blobs: BlobServiceClient,
        queues: QueueServiceClient,
        *,
        raw: str = "raw",
        curated: str = "curated",
        load_queue: str = "load-jobs",
        timeout_s: float | None = None,
    ) -> None:
        self.blobs = blobs
        self.queues = queues
        self.raw = raw
        self.curated = curated
        self.load_queue = load_queue
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"Lake(endpoint={self.endpoint!r}, raw={self.raw!r}, curated={self.curated!r})"

    @property
    def endpoint(self) -> str:
        """The blob service endpoint, without any query (a SAS token) or credential."""
        return _endpoint(self.blobs.url)

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        """A Lake for the LAKE_STORAGE connection of `settings` (connection string or identity)."""
        lake = settings.require("lake").lake
        assert lake is not None
        timeout = settings.storage_timeout
        bounded: dict[str, Any] = {"connection_timeout": timeout}
        blob_retry = LinearRetry(backoff=RETRY_BACKOFF_S, random_jitter_range=1, retry_total=RETRY_TOTAL)
        queue_retry = QueueLinearRetry(backoff=RETRY_BACKOFF_S, random_jitter_range=1, retry_total=RETRY_TOTAL)
        if lake.connection_string is not None:
            conn = lake.connection_string.reveal()
            try:
                blobs = BlobServiceClient.from_connection_string(conn, retry_policy=blob_retry, **bounded)
                queues = QueueServiceClient.from_connection_string(conn, retry_policy=queue_retry, **bounded)
            except ValueError as exc:
                raise TerminalError(
                    f"{SETTING} is not a usable storage connection string ({describe(exc)}; value not shown): "
                    "fix the setting; nothing was read or written"
                ) from None
        else:
            from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

            credential: Any = (
                ManagedIdentityCredential(client_id=lake.client_id) if lake.client_id else DefaultAzureCredential()
            )
            blobs = BlobServiceClient(
                str(lake.blob_service_uri), credential=credential, retry_policy=blob_retry, **bounded
            )
            queues = QueueServiceClient(
                str(lake.queue_service_uri), credential=credential, retry_policy=queue_retry, **bounded
            )
        return cls(
            blobs,
            queues,
            raw=settings.raw_container,
            curated=settings.curated_container,
            load_queue=settings.load_queue,
            timeout_s=timeout,
        )

    def ensure(self) -> None:
        """Create the containers and queues if missing (Terraform does it in Azure; Azurite starts empty)."""

        def create(kind: str, name: str) -> None:
            with contextlib.suppress(ResourceExistsError), self._guard(name, ""):
                if kind == "container":
                    self.blobs.create_container(name)
                else:
                    self.queues.create_queue(name)

        # The first alone (a storage that is down fails it and nothing else is tried), the rest at once.
        create("container", self.raw)
        names = [("container", self.curated), ("queue", self.load_queue), ("queue", f"{self.load_queue}-poison")]
        pool = io_pool("lake-ensure", len(names))
        for created in [pool.submit(create, kind, name) for kind, name in names]:
            created.result()

    def put_once(self, container: str, name: str, data: bytes | IO[bytes], content_type: str | None = None) -> None:
        """Create blob `name` with `data` (bytes, or a binary file streamed from its position);
        raise BlobExistsError if it exists (If-None-Match: *)."""
        settings = ContentSettings(content_type=content_type) if content_type else None
        try:
            with self._guard(container, name):
                self.blobs.get_blob_client(container, name).upload_blob(
                    data, overwrite=False, content_settings=settings
                )
        except ResourceExistsError as exc:
            raise BlobExistsError(f"{container}/{name} already exists; the lake never overwrites it") from exc

    def get(self, container: str, name: str) -> bytes:
        """The bytes of blob `name`; raise ResourceNotFoundError if it does not exist."""
        with self._guard(container, name):
            return bytes(self.blobs.get_blob_client(container, name).download_blob().readall())

    def download(self, container: str, name: str, path: Path) -> str:
        """Stream blob `name` into the local file `path` (memory holds a few chunks, never the blob) and
        return the file's sha256 (hex); raise ResourceNotFoundError if the blob does not exist."""
        digest = hashlib.sha256()
        with self._guard(container, name), path.open("wb") as stream:
            for chunk in self.blobs.get_blob_client(container, name).download_blob().chunks():
                stream.write(chunk)
                digest.update(chunk)
        return digest.hexdigest()

    def exists(self, container: str, name: str) -> bool:
        """Whether blob `name` exists."""
        with self._guard(container, name):
            return bool(self.blobs.get_blob_client(container, name).exists())

    def list(self, container: str, prefix: str) -> Iterator[str]:
        """Names of the blobs under `prefix`, in name order."""
        with self._guard(container, prefix):
            yield from self.blobs.get_container_client(container).list_blob_names(name_starts_with=prefix)

    def read_versioned(self, container: str, name: str) -> Versioned:
        """A mutable state blob and its ETag, or (None, None) if it does not exist yet."""
        try:
            with self._guard(container, name):
                downloader = self.blobs.get_blob_client(container, name).download_blob()
                return Versioned(bytes(downloader.readall()), downloader.properties.etag)
        except ResourceNotFoundError:
            return Versioned(None, None)

    def write_versioned(self, container: str, name: str, data: bytes, etag: str | None) -> str:
        """Replace a state blob only if unchanged since read at `etag` (None: only if absent); new ETag."""
        client = self.blobs.get_blob_client(container, name)
        try:
            with self._guard(container, name):
                if etag is None:
                    result = client.upload_blob(data, overwrite=False)
                else:
                    from azure.core import MatchConditions

                    result = client.upload_blob(
                        data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified
                    )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            raise ConcurrentUpdateError(
                f"{container}/{name} was changed by another invocation since it was read; "
                "this run's update was not applied and the next attempt re-reads it"
            ) from exc
        return str(result["etag"])

    @contextlib.contextmanager
    def lease(self, container: str, name: str, seconds: int = LEASE_SECONDS) -> Iterator[Lease | None]:
        """Hold a blob lease on `name` (an empty blob, created if missing) while the block runs, renewed in
        the background; None when another holder has it. A finite lease: a holder that dies without
        releasing it loses it `seconds` later."""
        client = self.blobs.get_blob_client(container, name)
        lease_client = BlobLeaseClient(client)
        try:
            with self._guard(container, name):
                try:
                    lease_client.acquire(lease_duration=seconds)
                except ResourceNotFoundError:  # the first holder ever: create the blob (once), then lease it
                    with contextlib.suppress(ResourceExistsError):
                        client.upload_blob(b"", overwrite=False)
                    lease_client.acquire(lease_duration=seconds)
        except HttpResponseError as exc:
            if exc.status_code == 409:  # LeaseAlreadyPresent
                yield None
                return
            raise
        held = Lease(lease_client, f"{container}/{name}", seconds, self._guard(container, name))
        try:
            yield held
        finally:
            held.release()

    def read_json(self, container: str, name: str) -> Any:
        """Parse a JSON blob."""
        return json.loads(self.get(container, name))

    def _guard(self, container: str, name: str) -> _StorageFaults:
        return _StorageFaults(self, f"{container}/{name}".rstrip("/"))


class LeaseLostError(TransientError):
    """A lease ran out and could not be renewed (another holder may have it now): stop before committing."""


class Lease:
    """A held blob lease, renewed every third of its duration by a daemon thread until released."""

    def __init__(self, client: BlobLeaseClient, where: str, seconds: int, guard: _StorageFaults) -> None:
        self.client, self.where, self.seconds, self.guard = client, where, seconds, guard
        self.lost: BaseException | None = None
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew_until_stopped, name="totes-lease", daemon=True)
        self._renewer.start()

    def check(self) -> None:
        """Renew now; raise LeaseLostError if the lease is no longer this holder's."""
        if self.lost is None:
            try:
                with self.guard:
                    self.client.renew()
            except (AzureError, TransientError) as exc:
                self.lost = exc
        if self.lost is not None:
            raise LeaseLostError(
                f"lost the lease on {self.where} ({describe(self.lost)}): another invocation may hold it now; "
                "this one stops before committing anything more"
            )

    def release(self) -> None:
        """Stop renewing and give the lease back (an expired or lost lease is left to expire)."""
        self._stop.set()
        self._renewer.join()
        with contextlib.suppress(AzureError):
            self.client.release()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.client.renew()
            except AzureError as exc:
                log.warning("could not renew the lease on %s: %s", self.where, describe(exc))
                self.lost = exc
                return


class _StorageFaults:
    """Turn Azure errors that are not the caller's business into one-line pipeline errors naming the
    endpoint, the blob and the setting (scrubbed: the SDK's text may quote a connection string)."""

    def __init__(self, lake: Lake, where: str) -> None:
        self.lake, self.where = lake, where

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            return
        at = f"lake storage at {self.lake.endpoint} (setting {SETTING})"
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            timeout = f", STORAGE_TIMEOUT={self.lake.timeout_s:g} s each" if self.lake.timeout_s else ""
            raise TransientError(
                f"{at} unreachable while accessing {self.where} ({describe(exc)}; gave up after "
                f"{RETRY_TOTAL + 1} tries{timeout}); nothing further was written, the next attempt retries"
            ) from None
        status = getattr(exc, "status_code", None)
        if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
            raise TerminalError(
                f"{at} refused the credentials while accessing {self.where} ({describe(exc)}): check the "
                "account key or identity in the setting; nothing further was written"
            ) from None
        if isinstance(exc, AzureError) and status in (500, 502, 503, 504):
            raise TransientError(f"{at}: server error on {self.where} ({describe(exc)})") from None


def _endpoint(url: str) -> str:
    """`url` without query or fragment (where a SAS token would be)."""
    return url.split("?", 1)[0].split("#", 1)[0].rstrip("/")

"""Blob and queue I/O for the lake: write-once data blobs, ETag-guarded state, the load queue.

Blob API only (azure-storage-blob): it works on ADLS Gen2 with hierarchical namespace and on Azurite.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContentSettings
from azure.storage.queue import QueueServiceClient

from shared.errors import TerminalError, TransientError
from shared.settings import Settings

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
    ) -> None:
        self.blobs = blobs
        self.queues = queues
        self.raw = raw
        self.curated = curated
        self.load_queue = load_queue

    @classmethod
    def from_settings(cls, settings: Settings) -> Lake:
        """A Lake for the LAKE_STORAGE connection of `settings` (connection string or identity)."""
        lake = settings.require("lake").lake
        assert lake is not None
        if lake.connection_string is not None:
            conn = lake.connection_string.reveal()
            blobs = BlobServiceClient.from_connection_string(conn)
            queues = QueueServiceClient.from_connection_string(conn)
        else:
            from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

            credential: Any = (
                ManagedIdentityCredential(client_id=lake.client_id) if lake.client_id else DefaultAzureCredential()
            )
            blobs = BlobServiceClient(str(lake.blob_service_uri), credential=credential)
            queues = QueueServiceClient(str(lake.queue_service_uri), credential=credential)
        return cls(
            blobs,
            queues,
            raw=settings.raw_container,
            curated=settings.curated_container,
            load_queue=settings.load_queue,
        )

    def ensure(self) -> None:
        """Create the containers and queues if missing (Terraform does it in Azure; Azurite starts empty)."""
        for container in (self.raw, self.curated):
            with contextlib.suppress(ResourceExistsError):
                self.blobs.create_container(container)
        for queue in (self.load_queue, f"{self.load_queue}-poison"):
            with contextlib.suppress(ResourceExistsError):
                self.queues.create_queue(queue)

    def put_once(self, container: str, name: str, data: bytes | IO[bytes], content_type: str | None = None) -> None:
        """Create blob `name` with `data` (bytes, or a binary file streamed from its position);
        raise BlobExistsError if it exists (If-None-Match: *)."""
        settings = ContentSettings(content_type=content_type) if content_type else None
        try:
            with _transient(container, name):
                self.blobs.get_blob_client(container, name).upload_blob(
                    data, overwrite=False, content_settings=settings
                )
        except ResourceExistsError as exc:
            raise BlobExistsError(f"{container}/{name} already exists; the lake never overwrites it") from exc

    def get(self, container: str, name: str) -> bytes:
        """The bytes of blob `name`; raise ResourceNotFoundError if it does not exist."""
        with _transient(container, name):
            return bytes(self.blobs.get_blob_client(container, name).download_blob().readall())

    def exists(self, container: str, name: str) -> bool:
        """Whether blob `name` exists."""
        with _transient(container, name):
            return bool(self.blobs.get_blob_client(container, name).exists())

    def list(self, container: str, prefix: str) -> Iterator[str]:
        """Names of the blobs under `prefix`, in name order."""
        with _transient(container, prefix):
            yield from self.blobs.get_container_client(container).list_blob_names(name_starts_with=prefix)

    def read_versioned(self, container: str, name: str) -> Versioned:
        """A mutable state blob and its ETag, or (None, None) if it does not exist yet."""
        try:
            with _transient(container, name):
                downloader = self.blobs.get_blob_client(container, name).download_blob()
                return Versioned(bytes(downloader.readall()), downloader.properties.etag)
        except ResourceNotFoundError:
            return Versioned(None, None)

    def write_versioned(self, container: str, name: str, data: bytes, etag: str | None) -> str:
        """Replace a state blob only if unchanged since read at `etag` (None: only if absent); new ETag."""
        client = self.blobs.get_blob_client(container, name)
        try:
            with _transient(container, name):
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

    def read_json(self, container: str, name: str) -> Any:
        """Parse a JSON blob."""
        return json.loads(self.get(container, name))


class _transient:
    """Turn network-level Azure errors into TransientError naming the blob involved."""

    def __init__(self, container: str, name: str) -> None:
        self.where = f"{container}/{name}"

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            raise TransientError(f"lake storage unreachable while accessing {self.where}: {exc}") from exc
        if isinstance(exc, AzureError) and getattr(exc, "status_code", None) in (500, 502, 503, 504):
            raise TransientError(f"lake storage error on {self.where}: {exc}") from exc

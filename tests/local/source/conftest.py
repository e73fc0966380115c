"""Fixtures of the source tests: a second, independent copy of the seeded snapshot."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from shared.local.stack import with_database


@pytest.fixture
def other_source_db(admin_url: str, snapshot_template: str) -> Iterator[str]:
    """URL of another private copy of the real snapshot, next to `source_db` (to compare two runs)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(snapshot_template))
        )
    yield with_database(admin_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

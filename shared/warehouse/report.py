"""Read-only summaries of the warehouse for the CLI: row counts and the history a run created."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from shared import contract
from shared.contract import FACT_ORDER, RECORD_IDS, TABLE_KEYS

# fact table -> (natural id, record id, last-updated time column)
FACTS = {table: (TABLE_KEYS[table], RECORD_IDS[table], FACT_ORDER[table][-1]) for table in contract.FACTS}


@dataclass(frozen=True)
class RunHistory:
    """What one run added to a fact table: rows, how many were new versions of known ids, examples."""

    table: str
    rows: int
    new_versions: int
    examples: list[tuple[int, int]]  # (natural id, number of versions now held)


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Row count of every star table."""
    counts = {}
    for table in contract.TABLES:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def run_history(conn: psycopg.Connection, run_id: str, examples: int = 3) -> list[RunHistory]:
    """Per fact table, the rows `run_id` added and how many of them are later versions of known rows."""
    result = []
    for table, (natural, record, _) in FACTS.items():
        query = sql.SQL(
            "SELECT f.{nat}, (SELECT count(*) FROM {t} g WHERE g.{nat} = f.{nat}) AS versions "
            "FROM {t} f WHERE f.etl_run_id = %s ORDER BY versions DESC, f.{rec}"
        ).format(nat=sql.Identifier(natural), t=sql.Identifier(table), rec=sql.Identifier(record))
        rows = conn.execute(query, (run_id,)).fetchall()
        history = [(int(r[0]), int(r[1])) for r in rows]
        result.append(
            RunHistory(
                table=table,
                rows=len(history),
                new_versions=sum(1 for _, v in history if v > 1),
                examples=[h for h in history if h[1] > 1][:examples],
            )
        )
    return result


def versions(conn: psycopg.Connection, table: str, natural_id: int) -> list[dict[str, object]]:
    """Every version held for one order/payment, oldest first."""
    natural, record, _ = FACTS[table]
    query = sql.SQL("SELECT * FROM {t} WHERE {nat} = %s ORDER BY {rec}").format(
        t=sql.Identifier(table), nat=sql.Identifier(natural), rec=sql.Identifier(record)
    )
    cur = conn.execute(query, (natural_id,))
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

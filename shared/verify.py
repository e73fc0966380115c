"""`totes verify`: the warehouse compared with the source, table by table, every column, in bounded memory.

The comparison is independent of the transform: what each star table should hold is written here as SQL
over the source (joins, casts and the current version of each order), and what it does hold is read from
the warehouse (current dimension rows, the `current_*` views of the facts, rows marked `etl_deleted_at`
left out). Both sides stream `(key, md5 of the row's text)` ordered by key through server-side cursors
and are merge-joined, so memory does not grow with the tables; only the few example keys of each
difference are read whole, to name the columns that differ. dim_date is checked for coverage (every day
from the source's earliest to its latest date) and for the correctness of its attributes, and each of the
dashboard's summary tables against its rows computed afresh from the warehouse's facts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

import psycopg
from psycopg import sql

from shared.contract import OUTPUT_SCHEMA, RECORD_IDS, TABLE_KEYS
from shared.warehouse.summaries import FIGURES

EXAMPLES = 5
BATCH = 20_000
# work_mem of the warehouse session: etl.<x>_figures, run over every fact, spill at the default 4MB.
VERIFY_WORK_MEM = "128MB"


@dataclass(frozen=True)
class Check:
    """One star table: its key, its columns, and what the source says it holds (SQL over the source)."""

    table: str
    source_sql: str  # SELECT of the table's columns (`columns`), in that order, over the source
    warehouse_relation: str  # the table or current_* view read in the warehouse

    @property
    def key(self) -> str:
        """The table's natural key (the contract's)."""
        return TABLE_KEYS[self.table]

    @property
    def columns(self) -> tuple[str, ...]:
        """Every warehouse column compared, key first: the contract's columns of the table but the
        bookkeeping ones (etl_*) and a fact's record id, which the source has no counterpart for."""
        return tuple(
            c for c in OUTPUT_SCHEMA[self.table] if not c.startswith("etl_") and c != RECORD_IDS.get(self.table)
        )


CHECKS: tuple[Check, ...] = (
    Check(
        "dim_staff",
        "SELECT s.staff_id, s.first_name, s.last_name, d.department_name, coalesce(d.location, 'Unknown'),"
        " s.email_address FROM staff s JOIN department d USING (department_id)",
        "dim_staff",
    ),
    Check(
        "dim_location",
        "SELECT address_id, address_line_1, address_line_2, district, city, postal_code, country, phone FROM address",
        "dim_location",
    ),
    Check(
        "dim_currency",
        "SELECT currency_id, currency_code, currency_code FROM currency",  # name: see _currency_names
        "dim_currency",
    ),
    Check(
        "dim_design",
        "SELECT design_id, design_name, file_location, file_name FROM design",
        "dim_design",
    ),
    Check(
        "dim_counterparty",
        "SELECT c.counterparty_id, c.counterparty_legal_name, a.address_line_1, a.address_line_2, a.district,"
        " a.city, a.postal_code, a.country, a.phone FROM counterparty c JOIN address a"
        " ON a.address_id = c.legal_address_id",
        "dim_counterparty",
    ),
    Check(
        "dim_payment_type",
        "SELECT payment_type_id, payment_type_name::text FROM payment_type",
        "dim_payment_type",
    ),
    Check(
        "dim_transaction",
        'SELECT transaction_id, transaction_type::text, sales_order_id, purchase_order_id FROM "transaction"',
        "dim_transaction",
    ),
    Check(
        "fact_sales_order",
        "SELECT sales_order_id, created_at::date, created_at::time(3), last_updated::date, last_updated::time(3),"
        " staff_id,"
        " counterparty_id, units_sold, unit_price, currency_id, design_id, agreed_payment_date,"
        " agreed_delivery_date, agreed_delivery_location_id FROM sales_order",
        "current_sales_order",
    ),
    Check(
        "fact_purchase_order",
        "SELECT purchase_order_id, created_at::date, created_at::time(3), last_updated::date, last_updated::time(3),"
        " staff_id,"
        " counterparty_id, item_code, item_quantity, item_unit_price, currency_id, agreed_delivery_date,"
        " agreed_payment_date, agreed_delivery_location_id FROM purchase_order",
        "current_purchase_order",
    ),
    Check(
        "fact_payment",
        "SELECT payment_id, created_at::date, created_at::time(3), last_updated::date, last_updated::time(3),"
        " transaction_id,"
        " counterparty_id, payment_amount, currency_id, payment_type_id, paid, payment_date FROM payment",
        "current_payment",
    ),
)

# The source's dates that dim_date must cover: the stamps, and the text dates that are well-formed (min and
# max of 'YYYY-MM-DD' text are taken as text, so a malformed value in the source cannot stop the check).
_STAMPED = {
    "sales_order": ("created_at", "last_updated"),
    "purchase_order": ("created_at", "last_updated"),
    "payment": ("created_at", "last_updated"),
}
_TEXT_DATES = {
    "sales_order": ("agreed_payment_date", "agreed_delivery_date"),
    "purchase_order": ("agreed_payment_date", "agreed_delivery_date"),
    "payment": ("payment_date",),
}


def _source_dates() -> sql.Composed:
    """(lo, hi) text pairs, one per date column of the source's facts."""
    stamp = sql.SQL("SELECT min({c}::date)::text, max({c}::date)::text FROM {t}")
    text = sql.SQL(
        "SELECT min({c}) FILTER (WHERE {c} ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}$'),"
        " max({c}) FILTER (WHERE {c} ~ '^\\d{{4}}-\\d{{2}}-\\d{{2}}$') FROM {t}"
    )
    parts = [
        template.format(c=sql.Identifier(column), t=sql.Identifier(table))
        for template, columns_of in ((stamp, _STAMPED), (text, _TEXT_DATES))
        for table, columns in columns_of.items()
        for column in columns
    ]
    return sql.SQL(" UNION ALL ").join(parts)


@dataclass
class TableDiff:
    """How one star table compares: row counts and the keys that are missing, unexpected or different."""

    table: str
    source_rows: int = 0
    warehouse_rows: int = 0
    equal: int = 0
    missing: int = 0  # in the source, not in the warehouse
    unexpected: int = 0  # in the warehouse, not in the source
    different: int = 0  # in both, some column differs
    examples: dict[str, list[str]] = field(default_factory=dict)  # kind -> a few keys (with columns)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every row is equal."""
        return not (self.missing or self.unexpected or self.different)

    def line(self) -> str:
        """One report line: counts and the examples of each difference."""
        head = (
            f"{self.table:<20} {'ok' if self.ok else 'DIFFERS':<8} equal {self.equal:>9}  missing {self.missing:>7}"
            f"  unexpected {self.unexpected:>7}  different {self.different:>7}  ({self.seconds:.1f} s)"
        )
        tails = [f"\n    {kind}: {', '.join(keys)}" for kind, keys in self.examples.items() if keys]
        return head + "".join(tails)


@dataclass(frozen=True)
class VerifyReport:
    """The comparison of every star table (and dim_date's coverage) with the source."""

    tables: list[TableDiff]

    @property
    def ok(self) -> bool:
        """True when the warehouse equals the source everywhere."""
        return all(t.ok for t in self.tables)

    @property
    def differences(self) -> int:
        """Missing + unexpected + different rows over all tables."""
        return sum(t.missing + t.unexpected + t.different for t in self.tables)


@lru_cache(maxsize=1)
def _currency_names() -> dict[str, str]:
    """ISO 4217 code -> English name (the warehouse contract's currency_name), from pycountry."""
    import pycountry

    return {c.alpha_3: c.name for c in pycountry.currencies}


def _row_text(columns: Sequence[sql.Composable]) -> sql.Composable:
    """md5 of the row's text, every value cast to text first so both servers print them alike."""
    return sql.SQL("md5(ROW({})::text)").format(sql.SQL(", ").join(sql.SQL("({})::text").format(c) for c in columns))


def _has_deleted_column(conn: psycopg.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = %s AND column_name = 'etl_deleted_at'",
        (table,),
    ).fetchone()
    return row is not None


def _warehouse_query(conn: psycopg.Connection, check: Check, keys: list[int] | None = None) -> sql.Composed:
    cols = [sql.Identifier(c) for c in check.columns]
    where: list[sql.Composable] = []
    if _has_deleted_column(conn, check.warehouse_relation):
        where.append(sql.SQL("etl_deleted_at IS NULL"))
    if keys is not None:
        where.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(check.key)))
    body = sql.SQL(", ").join(cols) if keys is not None else sql.SQL("{}, {}").format(cols[0], _row_text(cols))
    query = sql.SQL("SELECT {} FROM {}").format(body, sql.Identifier(check.warehouse_relation))
    if where:
        query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(where))
    return sql.SQL("{} ORDER BY 1").format(query)


def _source_query(check: Check, keys: list[int] | None = None) -> sql.Composed:
    cols = [sql.Identifier(f"c{i}") for i in range(len(check.columns))]
    inner = sql.SQL(check.source_sql)  # literal SQL written above, no input in it
    alias = sql.SQL(", ").join(cols)
    if keys is not None:
        return sql.SQL("SELECT * FROM ({}) AS s ({}) WHERE c0 = ANY(%s) ORDER BY 1").format(inner, alias)
    if check.table == "dim_currency":
        return sql.SQL("SELECT c0, c1, c2 FROM ({}) AS s ({}) ORDER BY 1").format(inner, alias)
    return sql.SQL("SELECT c0, {} FROM ({}) AS s ({}) ORDER BY 1").format(_row_text(cols), inner, alias)


def _stream(conn: psycopg.Connection, query: sql.Composed, name: str) -> Iterator[tuple]:
    with conn.cursor(name=name) as cur:
        cur.itersize = BATCH
        cur.execute(query)
        yield from cur


def _currency_rows(rows: Iterator[tuple]) -> Iterator[tuple]:
    """Source currency rows (id, code, code) -> (id, md5 of the row the warehouse should hold)."""
    names = _currency_names()
    for currency_id, code, _ in rows:
        yield currency_id, (currency_id, code, names.get(code, code))


def _warehouse_currency(rows: Iterator[tuple]) -> Iterator[tuple]:
    for row in rows:
        yield row[0], tuple(row)


def compare_table(src: psycopg.Connection, wh: psycopg.Connection, check: Check) -> TableDiff:
    """Merge-join the source's and the warehouse's (key, row hash) streams of one star table."""
    started = time.perf_counter()
    diff = TableDiff(check.table)
    found: dict[str, list[int]] = {"missing": [], "unexpected": [], "different": []}
    if check.table == "dim_currency":  # three rows; the ISO name is looked up in Python
        source: Iterator[tuple] = _currency_rows(_stream(src, _source_query(check), "verify_src"))
        keys = [sql.Identifier(c) for c in check.columns]
        query = sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
            sql.SQL(", ").join(keys), sql.Identifier(check.warehouse_relation)
        )
        warehouse: Iterator[tuple] = _warehouse_currency(_stream(wh, query, "verify_wh"))
    else:
        source = _stream(src, _source_query(check), "verify_src")
        warehouse = _stream(wh, _warehouse_query(wh, check), "verify_wh")
    sentinel = (None, None)
    s, w = next(source, sentinel), next(warehouse, sentinel)
    while s is not sentinel or w is not sentinel:
        if w is sentinel or (s is not sentinel and s[0] < w[0]):
            diff.source_rows += 1
            diff.missing += 1
            found["missing"].append(s[0])
            s = next(source, sentinel)
        elif s is sentinel or w[0] < s[0]:
            diff.warehouse_rows += 1
            diff.unexpected += 1
            found["unexpected"].append(w[0])
            w = next(warehouse, sentinel)
        else:
            diff.source_rows += 1
            diff.warehouse_rows += 1
            if s[1] == w[1]:
                diff.equal += 1
            else:
                diff.different += 1
                found["different"].append(s[0])
            s, w = next(source, sentinel), next(warehouse, sentinel)
        for examples in found.values():
            del examples[EXAMPLES:]
    diff.examples = {kind: [str(k) for k in keys] for kind, keys in found.items() if keys}
    if found["different"]:
        diff.examples["different"] = _describe_differences(src, wh, check, found["different"])
    diff.seconds = time.perf_counter() - started
    return diff


def _describe_differences(src: psycopg.Connection, wh: psycopg.Connection, check: Check, keys: list[int]) -> list[str]:
    """For a few differing keys: the key and the names of the columns that differ (values are not shown)."""
    if check.table == "dim_currency":
        source_rows = {r[0]: r[1] for r in _currency_rows(iter(src.execute(_source_query(check, keys), (keys,))))}
    else:
        source_rows = {r[0]: tuple(r) for r in src.execute(_source_query(check, keys), (keys,)).fetchall()}
    warehouse_rows = {r[0]: tuple(r) for r in wh.execute(_warehouse_query(wh, check, keys), (keys,)).fetchall()}
    described = []
    for key in keys:
        a, b = source_rows.get(key, ()), warehouse_rows.get(key, ())
        columns = [c for c, x, y in zip(check.columns, a, b, strict=False) if _text(x) != _text(y)]
        described.append(f"{key} ({', '.join(columns) or 'text form'})")
    return described


def _date(text: str | None) -> date | None:
    """An ISO date, or None for a missing or impossible one (e.g. 2024-02-30)."""
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def compare_dim_date(src: psycopg.Connection, wh: psycopg.Connection) -> TableDiff:
    """dim_date covers every day from the source's earliest to its latest date, with correct attributes."""
    started = time.perf_counter()
    diff = TableDiff("dim_date")
    bounds = src.execute(sql.SQL("SELECT lo, hi FROM ({}) AS d (lo, hi)").format(_source_dates())).fetchall()
    days = [_date(v) for pair in bounds for v in pair]
    valid = [d for d in days if d is not None]
    low, high = (min(valid), max(valid)) if valid else (None, None)
    total = wh.execute("SELECT count(*) FROM dim_date").fetchone()
    diff.warehouse_rows = int(total[0]) if total else 0
    if low is None or high is None:
        diff.unexpected = diff.warehouse_rows
    else:
        missing = wh.execute(
            "SELECT g::date FROM generate_series(%s::date, %s::date, interval '1 day') AS g"
            " WHERE NOT EXISTS (SELECT 1 FROM dim_date WHERE date_id = g::date) ORDER BY 1",
            (low, high),
        ).fetchall()
        diff.source_rows = (high - low).days + 1
        diff.missing = len(missing)
        diff.examples["missing"] = [str(r[0]) for r in missing[:EXAMPLES]]
    wrong = wh.execute(
        "SELECT date_id FROM dim_date WHERE year <> extract(year FROM date_id)"
        " OR month <> extract(month FROM date_id) OR day <> extract(day FROM date_id)"
        " OR day_of_week <> extract(isodow FROM date_id) OR quarter <> extract(quarter FROM date_id)"
        " OR day_name <> trim(to_char(date_id, 'FMDay')) OR month_name <> trim(to_char(date_id, 'FMMonth'))"
        " ORDER BY 1"
    ).fetchall()
    diff.different = len(wrong)
    diff.examples["different"] = [str(r[0]) for r in wrong[:EXAMPLES]]
    diff.equal = diff.warehouse_rows - diff.different
    diff.seconds = time.perf_counter() - started
    return diff


def compare_summary(wh: psycopg.Connection, table: str) -> TableDiff:
    """A dashboard summary table against its rows computed afresh from the warehouse's facts (views.sql's
    etl.<x>_figures(NULL)): `missing` rows the facts give and the table lacks, `unexpected` the reverse (a
    wrong sum counts once in each)."""
    started = time.perf_counter()
    diff = TableDiff(table)
    fresh = sql.SQL("SELECT * FROM {}(NULL)").format(sql.Identifier("etl", FIGURES[table]))
    kept = sql.SQL("TABLE {}").format(sql.Identifier(table))
    row = wh.execute(
        sql.SQL(
            "WITH f AS MATERIALIZED ({}), t AS MATERIALIZED ({}) SELECT (SELECT count(*) FROM f),"
            " (SELECT count(*) FROM t), (SELECT count(*) FROM (TABLE f EXCEPT ALL TABLE t) m),"
            " (SELECT count(*) FROM (TABLE t EXCEPT ALL TABLE f) u)"
        ).format(fresh, kept)
    ).fetchone()
    assert row is not None
    diff.source_rows, diff.warehouse_rows, diff.missing, diff.unexpected = (int(v) for v in row)
    diff.equal = diff.warehouse_rows - diff.unexpected
    for kind, first, second in (("missing", fresh, kept), ("unexpected", kept, fresh)):
        if getattr(diff, kind):
            query = sql.SQL("({}) EXCEPT ALL ({}) LIMIT {}").format(first, second, sql.Literal(EXAMPLES))
            diff.examples[kind] = [str(tuple(r)) for r in wh.execute(query)]
    diff.seconds = time.perf_counter() - started
    return diff


def verify(
    source_url: str, warehouse_url: str, tables: tuple[str, ...] = (), progress: Callable[[str], None] | None = None
) -> VerifyReport:
    """Compare every star table (or only `tables`) with the source, on one consistent snapshot of each side."""
    wanted = set(tables)
    results = []
    with psycopg.connect(source_url) as src, psycopg.connect(warehouse_url) as wh:
        for conn in (src, wh):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SET DateStyle = 'ISO, YMD'")
            conn.execute("SET TimeZone = 'UTC'")
        wh.execute("SELECT set_config('work_mem', %s, false)", (VERIFY_WORK_MEM,))  # the summaries' figures
        for check in CHECKS:
            if wanted and check.table not in wanted:
                continue
            diff = compare_table(src, wh, check)
            results.append(diff)
            if progress:
                progress(diff.line())
        if not wanted or "dim_date" in wanted:
            diff = compare_dim_date(src, wh)
            results.append(diff)
            if progress:
                progress(diff.line())
        for table in FIGURES:  # the dashboard's summaries, against the facts just compared
            if wanted and table not in wanted:
                continue
            diff = compare_summary(wh, table)
            results.append(diff)
            if progress:
                progress(diff.line())
    return VerifyReport(results)

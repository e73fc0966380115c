"""Simulated totesys traffic: the writes the real application makes, deterministic for a given seed.

Each change is one short transaction, as in the application: new sales and purchase orders with
their transaction and payment, payments flipping to paid, amendments of unpaid orders, and now and
then a dimension edit (department renamed, address changed, new design, new counterparty, staff
member moved to another department). Like the application, every insert sets created_at and
last_updated to now() and every update sets last_updated to now().

Determinism: rows are chosen by a seeded `random.Random` drawing a key and taking the first
matching row at or after it in key order, so the same seed on the same database makes the same
changes with the same values. Only what comes from the clock differs between runs: created_at and
last_updated, and the 'YYYY-MM-DD' dates reckoned from today (agreed dates, the date paid).
"""

from __future__ import annotations

import random
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple, get_args

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from shared.contract import SOURCE_TABLES, primary_key
from shared.errors import TerminalError, TransientError

ChangeKind = Literal[
    "new_sales_order",
    "new_purchase_order",
    "payment_paid",
    "sales_order_amended",
    "purchase_order_amended",
    "new_design",
    "address_changed",
    "new_counterparty",
    "staff_transferred",
    "department_renamed",
]
CHANGE_KINDS: tuple[ChangeKind, ...] = get_args(ChangeKind)
# Percent of changes of each kind: mostly new orders and payments being settled, some amendments,
# rare edits of the dimensions (the six small tables hardly ever change in the real database).
MIX: dict[ChangeKind, int] = {
    "new_sales_order": 35,
    "new_purchase_order": 15,
    "payment_paid": 25,
    "sales_order_amended": 10,
    "purchase_order_amended": 5,
    "new_design": 3,
    "address_changed": 2,
    "new_counterparty": 2,
    "staff_transferred": 2,
    "department_renamed": 1,
}
# The table whose key a change reports as its id.
KIND_TABLE: dict[ChangeKind, str] = {
    "new_sales_order": "sales_order",
    "new_purchase_order": "purchase_order",
    "payment_paid": "payment",
    "sales_order_amended": "sales_order",
    "purchase_order_amended": "purchase_order",
    "new_design": "design",
    "address_changed": "address",
    "new_counterparty": "counterparty",
    "staff_transferred": "staff",
    "department_renamed": "department",
}
DEPARTMENT_NAMES = (
    "Sales",
    "Purchasing",
    "Production",
    "Dispatch",
    "Finance",
    "Facilities",
    "Communications",
    "HR",
    "Logistics",
    "Marketing",
    "Customer Service",
    "Quality",
)
COMPANY_FORMS = ("{a} and Sons", "{a} Inc", "{a} LLC", "{a} Group", "{a} - {b}", "{a}, {b} and {c}")
Progress = Callable[[str], None]
_ANY_ROW = sql.SQL("TRUE")


def _quiet(_: str) -> None:
    return None


class Change(NamedTuple):
    """One simulated application write: its kind, the key of its main row (in KIND_TABLE[kind]),
    and every (table, key) it inserted or updated."""

    kind: ChangeKind
    id: int
    rows: tuple[tuple[str, int], ...]


@dataclass
class SimulationReport:
    """What a simulation did: the changes in order, their counts per kind, and when (database clock)."""

    seed: int
    planned: int
    started_at: datetime
    finished_at: datetime
    elapsed_s: float = 0.0
    changes: list[Change] = field(default_factory=list)
    interrupted: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """Changes per kind, every kind listed (zeros included), in CHANGE_KINDS order."""
        counted = Counter(c.kind for c in self.changes)
        return {str(kind): counted[kind] for kind in CHANGE_KINDS}

    def summary(self) -> list[str]:
        """Human lines: the total, then per kind its count and the ids it touched (ranges)."""
        state = "interrupted after" if self.interrupted else "made"
        lines = [
            f"simulation (seed {self.seed}) {state} {len(self.changes)} of {self.planned} changes "
            f"in {self.elapsed_s:.1f} s, from {self.started_at} to {self.finished_at} (source clock)"
        ]
        width = max(len(k) for k in CHANGE_KINDS)
        for kind in CHANGE_KINDS:
            ids = [c.id for c in self.changes if c.kind == kind]
            count = len(ids)
            detail = f"  {KIND_TABLE[kind]}_id {summarise_ids(ids)}" if ids else ""
            lines.append(f"  {kind:<{width}}  {count:>6,}{detail}")
        return lines


def summarise_ids(ids: list[int], most: int = 8) -> str:
    """Ids as sorted ranges, e.g. '3, 7..9, 12' (at most `most` ranges, then '(+n more)')."""
    runs: list[list[int]] = []
    for i in sorted(set(ids)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    shown = [f"{a}" if a == b else f"{a}..{b}" for a, b in runs[:most]]
    if len(runs) > most:
        shown.append(f"(+{sum(b - a + 1 for a, b in runs[most:])} more)")
    return ", ".join(shown)


@dataclass(frozen=True)
class _Cast:
    """A parameter cast to a named type, e.g. an enum: %s::"TransactionType"."""

    value: str
    type_name: str


def _value_sql(value: Any, params: list[Any]) -> sql.Composable:
    if isinstance(value, _Cast):
        params.append(value.value)
        return sql.SQL("{}::{}").format(sql.Placeholder(), sql.Identifier(value.type_name))
    params.append(value)
    return sql.Placeholder()


def _money(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(Decimal("0.01"))


def _text_date(day: date) -> str:
    return day.strftime("%Y-%m-%d")


class _Application:
    """The application's writes on one cursor; every method is one change inside the caller's transaction."""

    def __init__(self, cur: psycopg.Cursor[dict[str, Any]], rng: random.Random) -> None:
        self.cur = cur
        self.rng = rng
        self.today = date.min
        self.payment_types: dict[str, int] = {}

    # -- reading -------------------------------------------------------------------------------
    def pick(self, table: str, where: sql.Composable = _ANY_ROW, params: tuple[Any, ...] = ()) -> int | None:
        """A random row's key: draw a key up to the largest, take the first match at or after it
        (wrapping round), so choices depend only on the seed and the rows."""
        key = sql.Identifier(primary_key(table))
        ident = sql.Identifier(table)
        top = self.cur.execute(sql.SQL("SELECT max({}) AS k FROM {}").format(key, ident)).fetchone()
        if top is None or top["k"] is None:
            return None
        start = self.rng.randint(1, int(top["k"]))
        query = sql.SQL("SELECT {k} AS k FROM {t} WHERE {k} >= %s AND ({w}) ORDER BY {k} LIMIT 1")
        row = self.cur.execute(query.format(k=key, t=ident, w=where), (start, *params)).fetchone()
        if row is None:
            row = self.cur.execute(query.format(k=key, t=ident, w=where), (0, *params)).fetchone()
        return None if row is None else int(row["k"])

    def row(self, table: str, key: int) -> dict[str, Any]:
        """One row by key."""
        found = self.cur.execute(
            sql.SQL("SELECT * FROM {} WHERE {} = %s").format(sql.Identifier(table), sql.Identifier(primary_key(table))),
            (key,),
        ).fetchone()
        if found is None:
            raise TransientError(f"{table} {key} vanished while simulating (a concurrent delete?): run again")
        return found

    def payment_type(self, name: str) -> int:
        """The key of a payment type by its enum name (the first, if a scaled seed repeats it)."""
        if name not in self.payment_types:
            found = self.cur.execute(
                sql.SQL(
                    "SELECT payment_type_id FROM payment_type WHERE payment_type_name = %s::{} "
                    "ORDER BY payment_type_id LIMIT 1"
                ).format(sql.Identifier("PaymentTypeName")),
                (name,),
            ).fetchone()
            if found is None:
                raise TerminalError(
                    f"payment_type {name} is missing from the source: re-seed it (totes seed --replace)"
                )
            self.payment_types[name] = int(found["payment_type_id"])
        return self.payment_types[name]

    # -- writing -------------------------------------------------------------------------------
    def insert(self, table: str, values: dict[str, Any]) -> int:
        """Insert one row stamped created_at = last_updated = now(); return its new key."""
        params: list[Any] = []
        exprs = [_value_sql(v, params) for v in values.values()]
        query = sql.SQL("INSERT INTO {t} ({c}, created_at, last_updated) VALUES ({v}, now(), now()) RETURNING {k}")
        row = self.cur.execute(
            query.format(
                t=sql.Identifier(table),
                c=sql.SQL(", ").join(map(sql.Identifier, values)),
                v=sql.SQL(", ").join(exprs),
                k=sql.Identifier(primary_key(table)),
            ),
            params,
        ).fetchone()
        assert row is not None
        return int(row[primary_key(table)])

    def update(self, table: str, key: int, values: dict[str, Any]) -> None:
        """Update one row by key, stamping last_updated = now()."""
        params: list[Any] = []
        sets: list[sql.Composable] = [
            sql.SQL("{} = {}").format(sql.Identifier(c), _value_sql(v, params)) for c, v in values.items()
        ]
        sets.append(sql.SQL("last_updated = now()"))
        self.cur.execute(
            sql.SQL("UPDATE {} SET {} WHERE {} = %s").format(
                sql.Identifier(table), sql.SQL(", ").join(sets), sql.Identifier(primary_key(table))
            ),
            [*params, key],
        )
        if self.cur.rowcount != 1:
            raise TransientError(f"{table} {key} vanished while simulating (a concurrent delete?): run again")

    # -- the changes ---------------------------------------------------------------------------
    def make(self, kind: ChangeKind) -> Change:
        """Make one change of `kind` (a new order instead, when nothing is left to pay or amend)."""
        today = self.cur.execute("SELECT current_date AS d").fetchone()
        assert today is not None
        self.today = today["d"]
        makers: dict[ChangeKind, Callable[[], Change]] = {
            "new_sales_order": self.new_sales_order,
            "new_purchase_order": self.new_purchase_order,
            "payment_paid": self.payment_paid,
            "sales_order_amended": self.sales_order_amended,
            "purchase_order_amended": self.purchase_order_amended,
            "new_design": self.new_design,
            "address_changed": self.address_changed,
            "new_counterparty": self.new_counterparty,
            "staff_transferred": self.staff_transferred,
            "department_renamed": self.department_renamed,
        }
        return makers[kind]()

    def agreed_dates(self) -> tuple[str, str]:
        """Delivery 0-7 and payment 0-6 days from today, as in the snapshot."""
        delivery = self.today + timedelta(days=self.rng.randint(0, 7))
        payment = self.today + timedelta(days=self.rng.randint(0, 6))
        return _text_date(delivery), _text_date(payment)

    def picked(self, table: str) -> int:
        key = self.pick(table)
        if key is None:
            raise TerminalError(f"the source has no {table} rows: seed it first (totes seed)")
        return key

    def new_payment(self, transaction_id: int, order: dict[str, Any], amount: Decimal, type_name: str) -> int:
        return self.insert(
            "payment",
            {
                "transaction_id": transaction_id,
                "counterparty_id": order["counterparty_id"],
                "payment_amount": amount,
                "currency_id": order["currency_id"],
                "payment_type_id": self.payment_type(type_name),
                "paid": False,
                "payment_date": order["agreed_payment_date"],
                "company_ac_number": self.rng.randint(10_000_000, 99_999_999),
                "counterparty_ac_number": self.rng.randint(10_000_000, 99_999_999),
            },
        )

    def new_sales_order(self) -> Change:
        delivery, payment = self.agreed_dates()
        order: dict[str, Any] = {
            "design_id": self.picked("design"),
            "staff_id": self.picked("staff"),
            "counterparty_id": self.picked("counterparty"),
            "units_sold": self.rng.randint(1_000, 100_000),
            "unit_price": _money(self.rng.randint(200, 400)),
            "currency_id": self.picked("currency"),
            "agreed_delivery_date": delivery,
            "agreed_payment_date": payment,
            "agreed_delivery_location_id": self.picked("address"),
        }
        order_id = self.insert("sales_order", order)
        transaction_id = self.insert(
            "transaction", {"transaction_type": _Cast("SALE", "TransactionType"), "sales_order_id": order_id}
        )
        amount = order["units_sold"] * order["unit_price"]
        payment_id = self.new_payment(transaction_id, order, amount, "SALES_RECEIPT")
        rows = (("sales_order", order_id), ("transaction", transaction_id), ("payment", payment_id))
        return Change("new_sales_order", order_id, rows)

    def new_purchase_order(self) -> Change:
        delivery, payment = self.agreed_dates()
        order: dict[str, Any] = {
            "staff_id": self.picked("staff"),
            "counterparty_id": self.picked("counterparty"),
            "item_code": "".join(self.rng.choices(string.ascii_uppercase + string.digits, k=7)),
            "item_quantity": self.rng.randint(1, 999),
            "item_unit_price": _money(self.rng.randint(300, 100_000)),
            "currency_id": self.picked("currency"),
            "agreed_delivery_date": delivery,
            "agreed_payment_date": payment,
            "agreed_delivery_location_id": self.picked("address"),
        }
        order_id = self.insert("purchase_order", order)
        transaction_id = self.insert(
            "transaction",
            {"transaction_type": _Cast("PURCHASE", "TransactionType"), "purchase_order_id": order_id},
        )
        amount = order["item_quantity"] * order["item_unit_price"]
        payment_id = self.new_payment(transaction_id, order, amount, "PURCHASE_PAYMENT")
        rows = (("purchase_order", order_id), ("transaction", transaction_id), ("payment", payment_id))
        return Change("new_purchase_order", order_id, rows)

    def payment_paid(self) -> Change:
        payment_id = self.pick("payment", sql.SQL("NOT paid"))
        if payment_id is None:
            return self.new_sales_order()
        # The application marks a payment paid on the day it is paid (payment_date = that day).
        self.update("payment", payment_id, {"paid": True, "payment_date": _text_date(self.today)})
        return Change("payment_paid", payment_id, (("payment", payment_id),))

    def amend(self, table: str) -> tuple[int, int, dict[str, Any]] | None:
        """An unpaid order of `table`: (order key, payment key, order row); None if there is none."""
        unpaid = sql.SQL(
            "EXISTS (SELECT 1 FROM transaction t JOIN payment p USING (transaction_id) "
            "WHERE t.{k} = {t}.{k} AND NOT p.paid)"
        ).format(k=sql.Identifier(primary_key(table)), t=sql.Identifier(table))
        order_id = self.pick(table, unpaid)
        if order_id is None:
            return None
        found = self.cur.execute(
            sql.SQL(
                "SELECT p.payment_id FROM transaction t JOIN payment p USING (transaction_id) WHERE t.{} = %s"
            ).format(sql.Identifier(primary_key(table))),
            (order_id,),
        ).fetchone()
        assert found is not None
        return order_id, int(found["payment_id"]), self.row(table, order_id)

    def amend_order(
        self, kind: ChangeKind, table: str, quantity: str, price: str, draw: dict[str, Callable[[], Any]]
    ) -> Change | None:
        picked = self.amend(table)
        if picked is None:
            return None
        order_id, payment_id, order = picked
        what = self.rng.choice(("quantity", "price", "dates"))
        changes: dict[str, Any]
        if what == "dates":
            delivery, payment = self.agreed_dates()
            changes = {"agreed_delivery_date": delivery, "agreed_payment_date": payment}
        else:
            column = quantity if what == "quantity" else price
            changes = {column: draw[column]()}
        self.update(table, order_id, changes)
        order |= changes
        # The payment follows its order: the amount owed and the date it is due.
        self.update(
            "payment",
            payment_id,
            {"payment_amount": order[quantity] * order[price], "payment_date": order["agreed_payment_date"]},
        )
        return Change(kind, order_id, ((table, order_id), ("payment", payment_id)))

    def sales_order_amended(self) -> Change:
        draw = {
            "units_sold": lambda: self.rng.randint(1_000, 100_000),
            "unit_price": lambda: _money(self.rng.randint(200, 400)),
        }
        change = self.amend_order("sales_order_amended", "sales_order", "units_sold", "unit_price", draw)
        return change or self.new_sales_order()

    def purchase_order_amended(self) -> Change:
        draw = {
            "item_quantity": lambda: self.rng.randint(1, 999),
            "item_unit_price": lambda: _money(self.rng.randint(300, 100_000)),
        }
        table = "purchase_order"
        change = self.amend_order("purchase_order_amended", table, "item_quantity", "item_unit_price", draw)
        return change or self.new_purchase_order()

    def new_design(self) -> Change:
        name = self.row("design", self.picked("design"))["design_name"]
        location = self.row("design", self.picked("design"))["file_location"]
        # File names look like 'rubber-20240916-1hsu.json': the material, a date, four characters.
        stamp = date(2023, 1, 1) + timedelta(days=self.rng.randint(0, 699))
        suffix = "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=4))
        file_name = f"{name.lower().replace(' ', '-')}-{stamp:%Y%m%d}-{suffix}.json"
        design_id = self.insert("design", {"design_name": name, "file_location": location, "file_name": file_name})
        return Change("new_design", design_id, (("design", design_id),))

    def new_street(self) -> str:
        """A house number on a street taken from an existing address."""
        line = str(self.row("address", self.picked("address"))["address_line_1"])
        street = line.split(" ", 1)[-1]
        return f"{self.rng.randint(1, 9999)} {street}"

    def new_phone(self) -> str:
        return f"{self.rng.randint(1000, 9999)} {self.rng.randint(100000, 999999)}"

    def address_changed(self) -> Change:
        address_id = self.picked("address")
        self.update("address", address_id, {"address_line_1": self.new_street(), "phone": self.new_phone()})
        return Change("address_changed", address_id, (("address", address_id),))

    def person(self) -> str:
        first = self.row("staff", self.picked("staff"))["first_name"]
        last = self.row("staff", self.picked("staff"))["last_name"]
        return f"{first} {last}"

    def new_counterparty(self) -> Change:
        town = self.row("address", self.picked("address"))
        address_id = self.insert(
            "address",
            {
                "address_line_1": self.new_street(),
                "address_line_2": town["address_line_2"],
                "district": town["district"],
                "city": town["city"],
                "postal_code": town["postal_code"],
                "country": town["country"],
                "phone": self.new_phone(),
            },
        )
        a, b, c = (self.row("staff", self.picked("staff"))["last_name"] for _ in range(3))
        name = self.rng.choice(COMPANY_FORMS).format(a=a, b=b, c=c)
        counterparty_id = self.insert(
            "counterparty",
            {
                "counterparty_legal_name": name,
                "legal_address_id": address_id,
                "commercial_contact": self.person(),
                "delivery_contact": self.person(),
            },
        )
        return Change("new_counterparty", counterparty_id, (("address", address_id), ("counterparty", counterparty_id)))

    def staff_transferred(self) -> Change:
        staff_id = self.picked("staff")
        current = self.row("staff", staff_id)["department_id"]
        department_id = self.pick("department", sql.SQL("department_id <> %s"), (current,))
        if department_id is None:  # a single department: nowhere to move to
            return self.department_renamed()
        self.update("staff", staff_id, {"department_id": department_id})
        return Change("staff_transferred", staff_id, (("staff", staff_id),))

    def department_renamed(self) -> Change:
        department_id = self.picked("department")
        current = self.row("department", department_id)["department_name"]
        taken = {r["department_name"] for r in self.cur.execute("SELECT department_name FROM department")}
        free = [n for n in DEPARTMENT_NAMES if n not in taken]  # a rename never merges two departments
        name = self.rng.choice(free) if free else f"{current} {self.rng.randint(2, 99)}"
        self.update("department", department_id, {"department_name": name})
        return Change("department_renamed", department_id, (("department", department_id),))


def plan_size(changes: int | None, duration_s: float | None, rate: float | None) -> tuple[int, float | None]:
    """The number of changes to make and the pause between them (None: no pacing), from the options."""
    if rate is not None and rate <= 0:
        raise TerminalError(f"rate must be positive (changes per second), got {rate}")
    if changes is not None and duration_s is not None:
        raise TerminalError("give either changes or a duration (with a rate), not both")
    if changes is not None:
        if changes < 0:
            raise TerminalError(f"changes must be zero or more, got {changes}")
        return changes, (1 / rate if rate else None)
    if duration_s is not None:
        if duration_s <= 0:
            raise TerminalError(f"duration must be positive (seconds), got {duration_s}")
        per_second = rate if rate is not None else 1.0
        return int(duration_s * per_second), 1 / per_second
    raise TerminalError("say how much to simulate: --changes N, or --duration SECONDS --rate R")


def simulate(
    url: str,
    *,
    seed: int = 0,
    changes: int | None = None,
    duration_s: float | None = None,
    rate: float | None = None,
    progress: Progress = _quiet,
) -> SimulationReport:
    """Make application-like changes on the source at `url`: `changes` of them, or `rate` per second
    for `duration_s` seconds (int(duration_s * rate) changes, paced); return what was done.

    The same seed on the same data makes the same changes, whether paced or not.
    """
    planned, pause = plan_size(changes, duration_s, rate)
    # Simulated business data, not security: a seeded, reproducible generator is the point.
    rng = random.Random(seed)  # noqa: S311  # nosec B311
    kinds, weights = list(MIX), list(MIX.values())
    try:
        conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
    except psycopg.OperationalError as exc:
        raise TransientError(f"cannot connect to the source database to simulate changes: {exc}") from exc
    with conn:
        _require_source(conn)
        clock = conn.execute("SELECT localtimestamp::timestamp(3) AS t").fetchone()
        assert clock is not None
        report = SimulationReport(seed=seed, planned=planned, started_at=clock["t"], finished_at=clock["t"])
        app = _Application(conn.cursor(), rng)
        started = time.monotonic()
        step = max(1, planned // 10)
        try:
            for i in range(planned):
                if pause is not None:
                    time.sleep(max(0.0, started + i * pause - time.monotonic()))
                kind = rng.choices(kinds, weights)[0]
                with conn.transaction():
                    change = app.make(kind)
                report.changes.append(change)
                if (i + 1) % step == 0 or i + 1 == planned:
                    progress(f"simulated {i + 1}/{planned} changes (last: {change.kind} {change.id})")
            if pause is not None:  # a paced run lasts its whole span: the duration, or changes / rate
                span = duration_s if duration_s is not None else planned * pause
                time.sleep(max(0.0, started + span - time.monotonic()))
        except KeyboardInterrupt:
            report.interrupted = True
        report.elapsed_s = time.monotonic() - started
        clock = conn.execute("SELECT localtimestamp::timestamp(3) AS t").fetchone()
        assert clock is not None
        report.finished_at = clock["t"]
    return report


def _require_source(conn: psycopg.Connection[Any]) -> None:
    missing = [
        t
        for t in SOURCE_TABLES
        if not (row := conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (f"public.{t}",)).fetchone())
        or not row["ok"]
    ]
    if missing:
        raise TerminalError(
            f"the source database has no {', '.join(missing)} table(s): seed it first (totes seed), then simulate"
        )

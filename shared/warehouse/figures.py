"""The dashboard summaries of a first load, computed from the rows the load copies (polars), where a whole
rebuild reads the facts it has just written back from the warehouse (views.sql, etl.<x>_figures(NULL)).

A first load copies each fact, and dim_transaction, straight into its empty table (bulk.copy_facts,
bulk.copy_dimension): those tables then hold exactly the run's rows, so each summary is a group-by of them as
they pass. Memory holds the figures per currency code and, for the payments' due dates, each current order's
agreed payment date and each transaction's order (x1000: about 300 MB while the orders are copied). Pure
functions of frames; the summaries are the views.sql functions' figures, which tests/warehouse/test_summaries.py
checks on every first load it makes (each summary equals a rebuild).

A summary is computed so only when every table it reads was copied in the run, the currencies' codes are the
run's (`currencies`), and the run deletes nothing; otherwise the load rebuilds it with SQL as before
(summaries.rebuild). x1000, files streamed in 500k-row slices: the summaries 96.0 -> 9.4 s, the load's peak RSS
1,472 -> 1,647 MiB.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import polars as pl

MONEY = pl.Decimal(38, 2)
# Each summary -> the tables whose every row its figures read: copied whole in the run, they are the warehouse's.
READS: dict[str, tuple[str, ...]] = {
    "sales_summary": ("fact_sales_order",),
    "purchase_summary": ("fact_purchase_order",),
    "payment_summary": ("fact_payment", "dim_transaction", "fact_sales_order", "fact_purchase_order"),
}
# Each summary's key columns (after figure and currency_code) and figures, in its table's column order (views.sql).
KEYS: dict[str, dict[str, pl.DataType]] = {
    "sales_summary": {
        "created_month": pl.Date(),
        "design_id": pl.Int32(),
        "counterparty_id": pl.Int32(),
        "location_id": pl.Int32(),
        "staff_id": pl.Int32(),
    },
    "purchase_summary": {"created_month": pl.Date(), "counterparty_id": pl.Int32(), "item_code": pl.String()},
    "payment_summary": {"payment_month": pl.Date(), "payment_type_id": pl.Int32(), "due_date": pl.Date()},
}
FIGURES: dict[str, tuple[str, ...]] = {
    "sales_summary": ("revenue", "orders", "units"),
    "purchase_summary": ("spend", "orders", "items"),
    "payment_summary": ("paid_amount", "unpaid_amount", "payments"),
}
# The payments' due dates join these columns of the copied rows.
ORDER_DATES: dict[str, str] = {"fact_sales_order": "sales_order_id", "fact_purchase_order": "purchase_order_id"}


class Figures:
    """The summaries of the rows a first load copies, built up as they pass (`add`)."""

    def __init__(self) -> None:
        self.partials: dict[str, pl.DataFrame | None] = dict.fromkeys(READS)
        self.orders: dict[str, list[pl.DataFrame]] = {table: [] for table in ORDER_DATES}
        self.transactions: list[pl.DataFrame] = []
        self.copied: set[str] = set()
        self.due: Lookup | None = None
        self.codes: pl.DataFrame | None = None

    def currencies(self, rows: pl.DataFrame) -> None:
        """Take the run's dim_currency rows, merged into an empty table: each id's newest is then the warehouse's
        code for it. The figures are summed per code as each slice comes (a per-id partial could hold a row per
        order: x1000 has 3,000 currency ids of 3 codes)."""
        self.codes = (
            rows.sort("currency_id", "etl_source_updated")
            .unique("currency_id", keep="last")
            .select(pl.col("currency_id").cast(pl.Int32), "currency_code")
        )

    def add(self, table: str, rows: pl.DataFrame) -> None:
        """Take one slice of the rows copied into empty `table`: a fact's current versions, or dim_transaction's
        rows (each transaction once)."""
        if self.codes is None:  # (the summaries are then rebuilt in SQL)
            return
        if table in ORDER_DATES:
            summary = "sales_summary" if table == "fact_sales_order" else "purchase_summary"
            self._add_partial(summary, order_figures(summary, self._coded(rows)))
            self.orders[table].append(rows.select(ORDER_DATES[table], "agreed_payment_date"))
        elif table == "dim_transaction":  # (the other dimensions' rows are not needed)
            self.transactions.append(rows.select("transaction_id", "sales_order_id", "purchase_order_id"))
        elif table == "fact_payment" and self.due is not None:
            due = rows.with_columns(order_due=self.due.get(rows["transaction_id"]))
            self._add_partial("payment_summary", payment_figures(self._coded(due)))

    def done(self, table: str) -> None:
        """Every row of `table` was copied (and passed to `add`). Once the transactions and both orders are, each
        transaction's due date is looked up, and their rows let go, before the payments come (the load copies
        facts after dimensions, and payments last)."""
        self.copied.add(table)
        if self.due is None and set(READS["payment_summary"][1:]) <= self.copied:
            self.due = due_dates(self.transactions, self.orders)
            self.transactions, self.orders = [], {t: [] for t in ORDER_DATES}

    def ready(self, deleted: Collection[str] = ()) -> list[str]:
        """The summaries these figures give whole: every table each reads copied, the currencies' codes known
        (`currencies`), none of the run's deletions."""
        return [
            summary
            for summary, tables in READS.items()
            if set(tables) <= self.copied and not deleted and self.partials[summary] is not None
        ]

    def summaries(self, which: Collection[str]) -> dict[str, pl.DataFrame]:
        """The rows of each of the summaries `which` (see `ready`), in its table's columns."""
        found = {summary: self.partials[summary] for summary in which}
        return {summary: partial for summary, partial in found.items() if partial is not None}

    def _coded(self, rows: pl.DataFrame) -> pl.DataFrame:
        """`rows` with their currency code."""
        assert self.codes is not None
        return rows.join(self.codes, on="currency_id", how="left")

    def _add_partial(self, summary: str, partial: pl.DataFrame) -> None:
        """Sum a slice's figures into those of the slices before: memory holds one set."""
        before = self.partials[summary]
        self.partials[summary] = partial if before is None else combined(summary, [before, partial])


class Lookup:
    """Sorted unique int32 keys and a value for each: a left join of one slice against many rows without a hash
    table of them (numpy.searchsorted): 8 bytes a key and a bit."""

    def __init__(self, keys: pl.Series, values: pl.Series) -> None:
        if not keys.is_sorted():
            order = keys.arg_sort()
            keys, values = keys.gather(order), values.gather(order)
        self.keys = keys.cast(pl.Int32).to_numpy()
        self.values = values

    def get(self, wanted: pl.Series) -> pl.Series:
        """The value of each of `wanted` keys; null where the key is null or unknown."""
        if not len(self.keys):
            return pl.repeat(None, len(wanted), dtype=self.values.dtype, eager=True)
        asked = wanted.cast(pl.Int32).fill_null(0).to_numpy()
        at = np.minimum(np.searchsorted(self.keys, asked), len(self.keys) - 1)
        found = pl.Series(self.keys[at] == asked) & wanted.is_not_null()
        return pl.DataFrame({"value": self.values.gather(at), "found": found}).select(pl.when("found").then("value"))[
            "value"
        ]


def due_dates(transactions: list[pl.DataFrame], orders: Mapping[str, list[pl.DataFrame]]) -> Lookup:
    """Each transaction's order's agreed payment date (null when it has no order or the order no date), given the
    transactions (transaction_id, sales_order_id, purchase_order_id) and the current orders (id,
    agreed_payment_date); a million transactions at a time."""
    found = pl.concat(transactions) if transactions else _empty_transactions()
    by_order = {}
    for table, key in ORDER_DATES.items():  # a table with no order copied: an empty lookup (every date null)
        frames = orders.get(table) or [pl.DataFrame(schema={key: pl.Int32, "agreed_payment_date": pl.Date})]
        frame = pl.concat(frames)
        by_order[table] = Lookup(frame[key], frame["agreed_payment_date"])
    due = []
    for chunk in found.iter_slices(1_000_000):
        dates = [by_order[table].get(chunk[column]) for table, column in ORDER_DATES.items()]
        due.append(pl.select(pl.coalesce(*dates)).to_series())
    return Lookup(found["transaction_id"], pl.concat(due) if due else pl.Series([], dtype=pl.Date))


def _empty_transactions() -> pl.DataFrame:
    return pl.DataFrame(schema={"transaction_id": pl.Int32, "sales_order_id": pl.Int32, "purchase_order_id": pl.Int32})


def _grouped(
    base: pl.LazyFrame, summary: str, figure: str, keys: Mapping[str, str], sums: Mapping[str, pl.Expr]
) -> pl.LazyFrame:
    """One figure of `summary`: `base` grouped by currency code and `keys` (summary column -> base column), the
    summary's other key columns null."""
    grouped = base.group_by("currency_code", *keys.values()).agg(**sums)
    return grouped.select(
        pl.lit(figure, pl.String).alias("figure"),
        "currency_code",
        *(
            (pl.col(keys[column]) if column in keys else pl.lit(None)).cast(dtype).alias(column)
            for column, dtype in KEYS[summary].items()
        ),
        *FIGURES[summary],
    )


# Each order summary -> its fact's quantity and unit price columns, its amount and quantity figures, and its
# figures' groups (figure -> summary column -> fact column), as etl.sales_figures and etl.purchase_figures.
ORDERS: dict[str, tuple[str, str, str, str]] = {
    "sales_summary": ("units_sold", "unit_price", "revenue", "units"),
    "purchase_summary": ("item_quantity", "item_unit_price", "spend", "items"),
}
GROUPS: dict[str, dict[str, dict[str, str]]] = {
    "sales_summary": {
        "by_month": {"created_month": "created_month"},
        "top_designs": {"design_id": "design_id"},
        "top_counterparties": {"counterparty_id": "counterparty_id"},
        "by_location": {"location_id": "agreed_delivery_location_id"},
        "top_staff": {"staff_id": "sales_staff_id"},
    },
    "purchase_summary": {
        "by_month": {"created_month": "created_month"},
        "top_suppliers": {"counterparty_id": "counterparty_id"},
        "top_item_codes": {"item_code": "item_code"},
    },
}


def order_figures(summary: str, orders: pl.DataFrame) -> pl.DataFrame:
    """Current sales (purchase) order versions, with their currency code -> their `summary` figures."""
    quantity, price, amount, count = ORDERS[summary]
    base = orders.lazy().with_columns(
        pl.col("created_date").dt.truncate("1mo").alias("created_month"),
        (pl.col(quantity) * pl.col(price)).cast(MONEY).alias(amount),
        pl.col(quantity).cast(pl.Int64).alias(count),
    )
    sums = {amount: pl.col(amount).sum(), "orders": pl.len().cast(pl.Int64), count: pl.col(count).sum()}
    return pl.concat([_grouped(base, summary, f, k, sums) for f, k in GROUPS[summary].items()]).collect()


def payment_figures(payments: pl.DataFrame) -> pl.DataFrame:
    """Current payment versions, each with its currency code and its transaction's order's agreed payment date
    (`order_due`) -> their payment_summary figures (etl.payment_figures)."""
    amount = pl.col("payment_amount").cast(MONEY)
    zero = pl.lit(0).cast(MONEY)
    base = payments.lazy().with_columns(payment_month=pl.col("payment_date").dt.truncate("1mo"))
    by_type_month = _grouped(
        base,
        "payment_summary",
        "by_type_month",
        {"payment_month": "payment_month", "payment_type_id": "payment_type_id"},
        {
            "paid_amount": amount.filter(pl.col("paid")).sum(),
            "unpaid_amount": amount.filter(~pl.col("paid")).sum(),
            "payments": pl.len().cast(pl.Int64),
        },
    )
    paid = _grouped(
        base.filter(pl.col("paid")),
        "payment_summary",
        "by_due_date",
        {},
        {"paid_amount": amount.sum(), "unpaid_amount": zero.first(), "payments": pl.len().cast(pl.Int64)},
    )
    # An unpaid payment is due from its order's agreed payment date, else its own payment date.
    unpaid = base.filter(~pl.col("paid")).with_columns(due_date=pl.coalesce("order_due", "payment_date"))
    unpaid_due = _grouped(
        unpaid,
        "payment_summary",
        "by_due_date",
        {"due_date": "due_date"},
        {"paid_amount": zero.first(), "unpaid_amount": amount.sum(), "payments": pl.len().cast(pl.Int64)},
    )
    return pl.concat([by_type_month, paid, unpaid_due]).collect()


def combined(summary: str, partials: list[pl.DataFrame]) -> pl.DataFrame:
    """Figures of `summary` summed per currency code and key: its rows, in its table's columns."""
    keys = ["figure", "currency_code", *KEYS[summary]]
    return (
        pl.concat(partials)
        .group_by(keys)
        .agg(pl.col(f).sum() for f in FIGURES[summary])
        .select(*keys, *FIGURES[summary])
    )

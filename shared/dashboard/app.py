"""The dashboard's pages (Streamlit): sales, purchases, payments and pipeline health.

Served by `totes dashboard` (shared.dashboard.server.command). The page is chosen in the sidebar or
by the URL (?page=sales|purchases|payments|pipeline). Every figure is a query of shared.dashboard.queries
over the warehouse's views; amounts are shown per currency, never summed across currencies.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from shared.dashboard import queries
from shared.dashboard.sources import BACKLOG_DAYS, connect, lake_runs
from shared.settings import Settings, load_settings

CACHE_TTL_S = 300
CURRENCY_NOTE = "Amounts are in their own currency; nothing is summed across currencies."


@st.cache_resource
def settings() -> Settings:
    """The settings, read once per server."""
    return load_settings().require("warehouse")


def warehouse_url() -> str:
    """The warehouse URL (a secret: never shown)."""
    secret = settings().warehouse_db_url
    assert secret is not None
    return secret.reveal()


def ledger_version() -> tuple[Any, ...]:
    """Changes whenever a run is loaded: part of every cache key, so a new load is shown at once."""
    with connect(warehouse_url()) as conn:
        row = conn.execute("SELECT count(*), max(loaded_at) FROM etl.load_run").fetchone()
    return tuple(row or ())


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def default_filters(version: tuple[Any, ...]) -> queries.Filters:
    """The unfiltered range and currencies of the warehouse as of `version`."""
    with connect(warehouse_url()) as conn:
        return queries.default_filters(conn)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner="Querying the warehouse ...")
def fetch(page: queries.Page, filters: queries.Filters, version: tuple[Any, ...]) -> dict[str, pd.DataFrame]:
    """Every query of `page` as a frame by name (numeric columns as floats)."""
    frames = {}
    with connect(warehouse_url()) as conn:
        for name, query, params in queries.page_queries(page, filters):
            cur = conn.execute(query, params)
            columns = [d.name for d in cur.description or []]
            rows = [[float(v) if isinstance(v, Decimal) else v for v in row] for row in cur.fetchall()]
            frames[name] = pd.DataFrame(rows, columns=columns)
    return frames


def money(value: float | None) -> str:
    """An amount as the pages show it: thousands separators and two decimals."""
    return "-" if value is None or pd.isna(value) else f"{value:,.2f}"


def count(value: float | None) -> str:
    """A count as the pages show it."""
    return "-" if value is None or pd.isna(value) else f"{int(value):,}"


def sidebar(defaults: queries.Filters) -> tuple[queries.Page, queries.Filters]:
    """The page chooser and the filters."""
    st.sidebar.title("totes")
    asked = st.query_params.get("page", "sales")
    page: queries.Page = st.sidebar.radio(
        "Page",
        queries.PAGES,
        index=queries.PAGES.index(asked) if asked in queries.PAGES else 0,
        format_func=lambda p: queries.TITLES[p],
        key="page",
    )
    st.query_params["page"] = page
    # Filters may come from the URL too (?from=2023-01-01&to=2023-06-30&currency=GBP,USD): shareable views.
    start = _param_date("from", defaults.start, defaults)
    end = _param_date("to", defaults.end, defaults)
    picked = st.sidebar.date_input(
        "Date range",
        value=(start, end),
        min_value=defaults.start,
        max_value=defaults.end,
        key="dates",
        help="Sales and purchases by the order's created date, payments by their payment date",
    )
    if isinstance(picked, tuple) and len(picked) == 2:
        start, end = _date(picked[0]), _date(picked[1])
    asked_currencies = [c for c in st.query_params.get("currency", "").split(",") if c in defaults.currencies]
    currencies = st.sidebar.multiselect(
        "Currencies", defaults.currencies, default=asked_currencies or list(defaults.currencies), key="cur"
    )
    st.sidebar.caption(CURRENCY_NOTE)
    return page, queries.Filters(start=start, end=end, currencies=tuple(sorted(currencies)), span=defaults.span)


def _date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _param_date(name: str, fallback: date, defaults: queries.Filters) -> date:
    """A date from the URL, kept inside the warehouse's range; `fallback` if absent or not a date."""
    try:
        asked = date.fromisoformat(st.query_params.get(name, ""))
    except ValueError:
        return fallback
    return min(max(asked, defaults.start), defaults.end)


def figure(data: dict[str, pd.DataFrame], name: str, **columns: str) -> pd.DataFrame:
    """The rows of one figure of a page's query, its generic columns renamed (amount -> revenue, ...)."""
    frame = data["figures"]
    rows = frame[frame["figure"] == name].reset_index(drop=True)
    return rows.rename(columns=columns)


def metrics(frame: pd.DataFrame, shown: dict[str, tuple[str, Any]]) -> None:
    """One row of metric tiles per currency: label '<title> <currency>'."""
    for row in frame.itertuples(index=False):
        cols = st.columns(len(shown))
        for col, (column, (title, fmt)) in zip(cols, shown.items(), strict=True):
            col.metric(f"{title} {row.currency_code}", fmt(getattr(row, column)))


def per_currency(frame: pd.DataFrame, amount: str, title: str, label: str, extra: dict[str, str]) -> None:
    """For each currency: a bar chart of `amount` by label and the same figures as a table."""
    st.subheader(title)
    if frame.empty:
        st.info("No rows for these filters.")
        return
    currencies = list(dict.fromkeys(frame["currency_code"]))
    for col, currency in zip(st.columns(len(currencies)), currencies, strict=True):
        part = frame[frame["currency_code"] == currency]
        chart = (
            alt.Chart(part)
            .mark_bar()
            .encode(
                x=alt.X(f"{amount}:Q", title=f"{amount} ({currency})"),
                y=alt.Y("label:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False, labelLimit=160)),
                tooltip=["label", alt.Tooltip(f"{amount}:Q", format=",.2f")],
            )
            .properties(height=max(120, 24 * len(part)))
        )
        col.markdown(f"**{currency}**")
        col.altair_chart(chart, width="stretch")
        table = pd.DataFrame({label: part["label"], f"{amount} ({currency})": part[amount].map(money)})
        for column, heading in extra.items():
            table[heading] = part[column].map(count).to_numpy()
        col.table(table.set_index(label))


def by_month(frame: pd.DataFrame, amount: str, title: str) -> None:
    """A line of `amount` by month, one chart per currency with its own scale."""
    st.subheader(title)
    if frame.empty:
        st.info("No rows for these filters.")
        return
    chart = (
        alt.Chart(frame.assign(month=pd.to_datetime(frame["label"])))
        .mark_bar()
        .encode(
            x=alt.X("yearmonth(month):T", title="month"),
            y=alt.Y(f"{amount}:Q", title=amount),
            tooltip=["month:T", "currency_code", alt.Tooltip(f"{amount}:Q", format=",.2f")],
        )
        .properties(height=160)
        .facet(row=alt.Row("currency_code:N", title=None))
        .resolve_scale(y="independent")
    )
    st.altair_chart(chart, width="stretch")


def sales_page(data: dict[str, pd.DataFrame], version: tuple[Any, ...]) -> None:
    """Revenue per month by currency, top designs and counterparties, locations, staff."""
    names = {"amount": "revenue", "n": "orders", "n_2": "units"}
    totals = figure(data, "totals", **names)
    metrics(totals, {"revenue": ("Revenue", money), "orders": ("Orders", count), "units": ("Units", count)})
    by_month(figure(data, "by_month", **names), "revenue", "Revenue per month")
    per_currency(figure(data, "top_designs", **names), "revenue", "Top designs", "design", {"units": "units"})
    counterparties = figure(data, "top_counterparties", **names)
    per_currency(counterparties, "revenue", "Top counterparties", "counterparty", {"orders": "orders"})
    locations = figure(data, "by_location", **names).rename(columns={"label": "country", "detail": "city"})
    st.subheader("Sales by delivery country and city")
    if not locations.empty:
        chart = (
            alt.Chart(locations)
            .mark_bar()
            .encode(
                x=alt.X("revenue:Q"),
                y=alt.Y("country:N", sort="-x", title=None),
                color=alt.Color("city:N", legend=None),
                tooltip=["country", "city", alt.Tooltip("revenue:Q", format=",.2f"), "orders"],
            )
            .properties(height=max(150, 14 * locations["country"].nunique()), width=300)
            .facet(column=alt.Column("currency_code:N", title=None))
            .resolve_scale(x="independent")
        )
        st.altair_chart(chart)
    staff = figure(data, "top_staff", **names)
    per_currency(staff, "revenue", "Staff leaderboard", "staff", {"orders": "orders"})


def purchases_page(data: dict[str, pd.DataFrame], version: tuple[Any, ...]) -> None:
    """Spend per month, top suppliers and item codes."""
    names = {"amount": "spend", "n": "orders", "n_2": "items"}
    totals = figure(data, "totals", **names)
    metrics(totals, {"spend": ("Spend", money), "orders": ("Orders", count), "items": ("Items", count)})
    by_month(figure(data, "by_month", **names), "spend", "Spend per month")
    per_currency(figure(data, "top_suppliers", **names), "spend", "Top suppliers", "supplier", {"orders": "orders"})
    per_currency(figure(data, "top_item_codes", **names), "spend", "Top item codes", "item code", {"items": "items"})


def payments_page(data: dict[str, pd.DataFrame], version: tuple[Any, ...]) -> None:
    """Paid vs outstanding by payment type and month; overdue against the agreed payment date."""
    names = {"amount": "paid", "amount_2": "outstanding", "amount_3": "overdue", "n": "payments", "n_2": "overdue_n"}
    metrics(
        figure(data, "totals", **names),
        {
            "paid": ("Paid", money),
            "outstanding": ("Outstanding", money),
            "overdue": ("Overdue", money),
            "overdue_n": ("Overdue payments", count),
        },
    )
    frame = figure(data, "by_type_month", **names)
    st.subheader("Paid and outstanding per month, by payment type")
    if not frame.empty:
        long = frame.assign(month=pd.to_datetime(frame["label"]), payment_type=frame["detail"]).melt(
            id_vars=["month", "payment_type", "currency_code"], value_vars=["paid", "outstanding"], var_name="status"
        )
        chart = (
            alt.Chart(long)
            .mark_bar()
            .encode(
                x=alt.X("yearmonth(month):T", title="month"),
                y=alt.Y("sum(value):Q", title="amount"),
                color=alt.Color("status:N", scale=alt.Scale(domain=["paid", "outstanding"])),
                tooltip=["yearmonth(month):T", "payment_type", "status", alt.Tooltip("sum(value):Q", format=",.2f")],
            )
            .properties(height=140, width=260)
            .facet(row=alt.Row("currency_code:N", title=None), column=alt.Column("payment_type:N", title=None))
            .resolve_scale(y="independent")
        )
        st.altair_chart(chart)
    overdue = figure(data, "overdue", **names)
    overdue = overdue[overdue["overdue_n"] > 0]
    st.subheader("Overdue: unpaid past the agreed payment date")
    if overdue.empty:
        st.info("Nothing overdue for these filters.")
    else:
        table = pd.DataFrame(
            {
                "currency": overdue["currency_code"],
                "overdue by": overdue["label"].str.split(" ", n=1).str[1],
                "payments": overdue["overdue_n"].map(count),
                "amount": overdue["overdue"].map(money),
            }
        ).sort_values(["currency", "overdue by"])
        st.table(table.set_index("currency"))


def pipeline_page(data: dict[str, pd.DataFrame], version: tuple[Any, ...]) -> None:
    """Runs over time with rows per table, freshness lag, backlog and the last quarantines."""
    fresh = data["freshness"].iloc[0] if not data["freshness"].empty else None
    cols = st.columns(4)
    if fresh is None or not fresh["runs_loaded"]:
        st.info("No run loaded yet.")
        return
    cols[0].metric("Freshness lag", _duration(fresh["freshness_lag_seconds"]), help="now - newest source change loaded")
    cols[1].metric("Since last load", _duration(fresh["since_last_load_seconds"]))
    cols[2].metric("Runs loaded", count(fresh["runs_loaded"]))
    runs = data["runs"]
    lake_view(cols[3], version)
    rows = data["rows_per_table"]
    st.subheader(f"Rows per table per run (last {queries.RECENT_RUNS} runs)")
    chart = (
        alt.Chart(rows)
        .mark_line(point=True)
        .encode(
            x=alt.X("loaded_at:T", title="loaded at", axis=alt.Axis(format="%Y-%m-%d %H:%M", labelAngle=-30)),
            y=alt.Y("row_count:Q", scale=alt.Scale(type="symlog"), title="rows (symlog)"),
            color=alt.Color("table_name:N", title="table", legend=alt.Legend(orient="bottom", columns=4)),
            tooltip=["run_id", "table_name", "row_count"],
        )
        .properties(height=260)
    )
    st.altair_chart(chart, width="stretch")
    st.subheader("Lag and load time per run")
    long = runs.melt(id_vars=["loaded_at", "run_id"], value_vars=["lag_seconds", "load_seconds"], var_name="measure")
    lag = (
        alt.Chart(long.dropna())
        .mark_line(point=True)
        .encode(
            x=alt.X("loaded_at:T", title="loaded at", axis=alt.Axis(format="%Y-%m-%d %H:%M", labelAngle=-30)),
            y=alt.Y("value:Q", title="seconds (symlog)", scale=alt.Scale(type="symlog")),
            color="measure:N",
            tooltip=["run_id", "measure", alt.Tooltip("value:Q", format=",.1f")],
        )
        .properties(height=200)
    )
    st.altair_chart(lag, width="stretch")
    st.subheader("Last runs")
    last = runs.head(20).assign(
        total_rows=runs["total_rows"].head(20).map(count),
        load_seconds=runs["load_seconds"].head(20).round(2),
        lag_seconds=runs["lag_seconds"].head(20).round(1),
    )
    st.table(last[["run_id", "loaded_at", "total_rows", "load_seconds", "lag_seconds"]].set_index("run_id"))


def lake_view(tile: Any, version: tuple[Any, ...]) -> None:
    """Backlog tile and quarantine table from the lake; a note where no lake is configured."""
    if settings().lake is None:
        tile.metric("Backlog", "-", help="LAKE_STORAGE is not set: the lake's runs are not shown")
        return
    lake = cached_lake_runs(version)
    tile.metric("Backlog (runs waiting)", count(len(lake["backlog"])), help="extracted in the last 7 days, not loaded")
    st.subheader("Last quarantined runs")
    if not lake["quarantined"]:
        st.caption("No quarantined run in the lake.")
    else:
        st.table(pd.DataFrame(lake["quarantined"]).set_index("run_id"))


@st.cache_data(ttl=60, show_spinner=False)
def cached_lake_runs(version: tuple[Any, ...]) -> dict[str, Any]:
    """The lake's backlog and quarantines (runs the ledger holds from the last days are not backlog), for a minute."""
    with connect(warehouse_url()) as conn:
        loaded = {r[0] for r in conn.execute(queries.LOADED_RECENTLY, {"days": BACKLOG_DAYS + 1})}
    found = lake_runs(settings(), loaded)
    return {"backlog": found.backlog, "quarantined": found.quarantined}


def _duration(seconds: float | None) -> str:
    if seconds is None or pd.isna(seconds):
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.0f} s"


PAGES = {"sales": sales_page, "purchases": purchases_page, "payments": payments_page, "pipeline": pipeline_page}


def main() -> None:
    """Render the page the sidebar or URL asks for."""
    st.set_page_config(page_title="totes dashboard", layout="wide")
    version = ledger_version()
    defaults = default_filters(version)
    page, filters = sidebar(defaults)
    st.title(queries.TITLES[page])
    if version and version[1] is not None:
        st.caption(f"Warehouse as of the last load at {version[1]:%Y-%m-%d %H:%M:%S %Z}. {CURRENCY_NOTE}")
    PAGES[page](fetch(page, filters, version), version)


main()

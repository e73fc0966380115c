"""The dashboard in a real browser: every page of the served app on a pipeline-loaded warehouse.

Each page must show the numbers the warehouse's views give when queried directly here, react to its
filters, render its charts, and log no console error. A screenshot per page goes to build/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import psycopg
import pytest
from playwright.sync_api import Browser, Page

from shared.dashboard import queries
from tests.dashboard.conftest import SCREENSHOTS, LoadedWarehouse

TIMEOUT_MS = 90_000


def money(value: Decimal | None) -> str:
    """An amount as the dashboard shows it."""
    return "-" if value is None else f"{value:,.2f}"


def count(value: int | None) -> str:
    """A count as the dashboard shows it."""
    return "-" if value is None else f"{int(value):,}"


# Per star page: SQL over the views giving, per currency, the metric tiles' expected values in order.
EXPECTED_METRICS = {
    "sales": (
        ("Revenue", "Orders", "Units"),
        "SELECT currency_code, sum(revenue), count(*), sum(units_sold) FROM sales_order_detail "
        "WHERE created_date BETWEEN %(start)s AND %(end)s GROUP BY 1 ORDER BY 1",
        (money, count, count),
    ),
    "purchases": (
        ("Spend", "Orders", "Items"),
        "SELECT currency_code, sum(spend), count(*), sum(item_quantity) FROM purchase_order_detail "
        "WHERE created_date BETWEEN %(start)s AND %(end)s GROUP BY 1 ORDER BY 1",
        (money, count, count),
    ),
    "payments": (
        ("Paid", "Outstanding", "Overdue", "Overdue payments"),
        "SELECT currency_code, coalesce(sum(payment_amount) FILTER (WHERE paid), 0),"
        " coalesce(sum(payment_amount) FILTER (WHERE NOT paid), 0),"
        " coalesce(sum(payment_amount) FILTER (WHERE days_overdue > 0), 0), count(*) FILTER (WHERE days_overdue > 0)"
        " FROM payment_detail WHERE payment_date BETWEEN %(start)s AND %(end)s GROUP BY 1 ORDER BY 1",
        (money, money, money, count),
    ),
}


# Charts per page at least: sales and purchases draw their top lists once per currency.
MIN_CHARTS = {"sales": 1 + 3 * 3 + 1, "purchases": 1 + 2 * 3, "payments": 1}


@pytest.fixture
def console_errors() -> list[str]:
    """Console errors and uncaught exceptions of the page under test (the test fails on any)."""
    return []


@pytest.fixture
def page(browser: Browser, console_errors: list[str]) -> Iterator[Page]:
    """A fresh browser tab that records console errors."""
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    tab.on("console", lambda m: console_errors.append(f"console: {m.text}") if m.type == "error" else None)
    tab.on("pageerror", lambda e: console_errors.append(f"page error: {e}"))
    yield tab
    context.close()


def warehouse_range(url: str) -> tuple[date, date]:
    """The dates dim_date spans: the dashboard's unfiltered range."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT min(date_id), max(date_id) FROM dim_date").fetchone()
    assert row is not None
    return row[0], row[1]


def expected_metrics(url: str, page_name: str, start: date, end: date) -> dict[str, str]:
    """Metric label -> shown value, computed straight from the views."""
    titles, query, formats = EXPECTED_METRICS[page_name]
    with psycopg.connect(url) as conn:
        rows = conn.execute(query, {"start": start, "end": end}).fetchall()
    return {
        f"{title} {row[0]}": fmt(value)
        for row in rows
        for title, fmt, value in zip(titles, formats, row[1:], strict=True)
    }


def settle(tab: Page, title: str = "Sales") -> None:
    """Wait until the app has finished its script run and the browser has drawn all of it: the title,
    the script state `notRunning`, a chart, and a DOM that no longer changes (Streamlit reports the end
    of a run before React has drawn every element)."""
    tab.get_by_role("heading", name=title, exact=True).wait_for()
    tab.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')"
        " === 'notRunning'"
    )
    tab.wait_for_selector('[data-testid="stVegaLiteChart"] svg, [data-testid="stVegaLiteChart"] canvas')
    snapshot = "() => document.querySelector('[data-testid=\"stMain\"]').innerText.length"
    stable, last = 0, -1
    while stable < 4:
        tab.wait_for_timeout(250)
        size = tab.evaluate(snapshot)
        stable, last = (stable + 1, last) if size == last else (0, size)


def shown_metrics(tab: Page) -> dict[str, str]:
    """Metric label -> value as the page shows them."""
    labels = tab.locator('[data-testid="stMetricLabel"]').all_inner_texts()
    values = tab.locator('[data-testid="stMetricValue"]').all_inner_texts()
    return dict(zip((t.strip() for t in labels), (v.strip() for v in values), strict=True))


def screenshot(tab: Page, name: str) -> None:
    """The whole page (Streamlit scrolls inside its main block, so the viewport grows to its height)."""
    height = tab.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    tab.set_viewport_size({"width": 1500, "height": max(1000, int(height) + 100)})
    tab.wait_for_timeout(500)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    tab.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 20_000, f"{path} looks empty"


def top_designs(url: str, currency: str) -> list[tuple[str, str]]:
    """The sales page's top designs for one currency, from the view directly."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT design_name || ' #' || design_id, sum(revenue) FROM sales_order_detail WHERE currency_code = %s"
            " GROUP BY design_id, design_name ORDER BY 2 DESC, 1 LIMIT %s",
            (currency, queries.TOP_N),
        ).fetchall()
    return [(name, money(amount)) for name, amount in rows]


@pytest.mark.parametrize("page_name", ["sales", "purchases", "payments"])
def test_star_page_shows_the_views_numbers(
    page_name: str, page: Page, console_errors: list[str], dashboard_url: str, loaded_warehouse: LoadedWarehouse
) -> None:
    start, end = warehouse_range(loaded_warehouse.url)
    page.goto(f"{dashboard_url}?page={page_name}")
    settle(page, queries.TITLES[page_name])
    shown = shown_metrics(page)
    expected = expected_metrics(loaded_warehouse.url, page_name, start, end)
    assert len(expected) >= 2 * len(EXPECTED_METRICS[page_name][0]), "the warehouse holds several currencies"
    assert shown == expected
    charts = page.locator('[data-testid="stVegaLiteChart"]').count()
    assert charts >= MIN_CHARTS[page_name], f"{page_name}: {charts} charts"
    screenshot(page, page_name)
    assert console_errors == []


def test_sales_top_designs_table_equals_the_view(
    page: Page, console_errors: list[str], dashboard_url: str, loaded_warehouse: LoadedWarehouse
) -> None:
    page.goto(f"{dashboard_url}?page=sales&currency=GBP")
    settle(page)
    table = page.locator('[data-testid="stTable"]').first
    rows = [
        [cell.strip() for cell in row.locator("th, td").all_inner_texts()] for row in table.locator("tbody tr").all()
    ]
    expected = top_designs(loaded_warehouse.url, "GBP")
    assert [(r[0], r[1]) for r in rows] == expected
    assert console_errors == []


def test_filters_change_the_numbers(
    page: Page, console_errors: list[str], dashboard_url: str, loaded_warehouse: LoadedWarehouse
) -> None:
    start, end = warehouse_range(loaded_warehouse.url)
    page.goto(f"{dashboard_url}?page=sales")
    settle(page)
    before = shown_metrics(page)
    assert "Revenue USD" in before
    # Currency, through the widget: removing USD's tag drops its tiles and leaves the others unchanged.
    page.get_by_role("button", name="Remove USD").click()
    page.get_by_text("Revenue USD").wait_for(state="detached")
    settle(page)
    after = shown_metrics(page)
    assert after == {k: v for k, v in before.items() if not k.endswith(" USD")}

    # Date range, through the URL: the first half of 2023 only.
    first_half = (date(2023, 1, 1), date(2023, 6, 30))
    assert start < first_half[0] and first_half[1] < end
    page.goto(f"{dashboard_url}?page=sales&from=2023-01-01&to=2023-06-30")
    settle(page)
    narrowed = shown_metrics(page)
    assert narrowed == expected_metrics(loaded_warehouse.url, "sales", *first_half)
    assert narrowed["Revenue GBP"] != before["Revenue GBP"]
    assert console_errors == []


def test_pipeline_page_shows_the_ledger(
    page: Page, console_errors: list[str], dashboard_url: str, loaded_warehouse: LoadedWarehouse
) -> None:
    page.goto(f"{dashboard_url}?page=pipeline")
    settle(page, queries.TITLES["pipeline"])
    shown = shown_metrics(page)
    with psycopg.connect(loaded_warehouse.url) as conn:
        runs = conn.execute("SELECT count(*) FROM etl.load_run").fetchone()
    assert runs is not None
    assert shown["Runs loaded"] == count(runs[0]) == "2"
    assert shown["Backlog (runs waiting)"] == "0", "both extracted runs were loaded"
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 2
    screenshot(page, "pipeline")
    assert console_errors == []

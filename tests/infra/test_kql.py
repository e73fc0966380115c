"""The KQL files of infra/kql parse, read only known tables and name only the metrics the code records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared import telemetry
from tests.infra.conftest import INFRA
from tests.infra.kql import KqlError, parse

KQL_FILES = sorted((INFRA / "kql").rglob("*.kql"))


def test_there_are_alert_and_workbook_queries() -> None:
    assert {path.parent.name for path in KQL_FILES} == {"alerts", "workbook"}


@pytest.mark.parametrize("path", KQL_FILES, ids=[f"{p.parent.name}/{p.name}" for p in KQL_FILES])
def test_each_kql_file_parses_and_names_known_metrics(path: Path) -> None:
    text = path.read_text()
    if path.parent.name == "workbook":
        assert "${" not in text, "workbook queries are read with file(), not templated"
    query = parse(re.sub(r"\$\{[a-z_]+\}", "0", text) if path.parent.name == "alerts" else text)
    assert query.tables, f"{path.name} reads no table"
    assert query.operators, f"{path.name} pipes through no operator"
    metrics = {s for s in query.strings if s.startswith("totes.")}
    assert metrics <= set(telemetry.METRIC_NAMES), f"{path.name} names unknown metrics {metrics}"
    if path.parent.name == "workbook":
        assert metrics, f"workbook panel {path.name} charts no pipeline metric"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('customMetrics\n| where name == "totes.rows"', None),
        ('customMetrics\n| where (name == "totes.rows"', "unclosed"),
        ("customMetrics\n| wher name == 1", "unknown operator"),
        ("traces_of_nothing\n| take 1", "must start with a table"),
        ('customMetrics\n| where name == "open', "unexpected character"),
        ("let x = requests | take 1;", "must end with a tabular statement"),
        ("requests | take 1;\ncustomMetrics", "only let statements"),
    ],
)
def test_the_reader_catches_malformed_queries(text: str, problem: str | None) -> None:
    if problem is None:
        assert parse(text).tables == {"customMetrics"}
    else:
        with pytest.raises(KqlError, match=problem):
            parse(text)

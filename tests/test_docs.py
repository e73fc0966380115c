"""The docs name what the code has: tables, contract names, module paths, settings, commands, and the files one
sales_order row passes through."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared import contract
from shared.cli import build_parser
from shared.lake import Lake
from shared.settings import Settings
from shared.warehouse import schema_sql
from tools.trace_row import OFF_PATH, trace_row

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
WAREHOUSE = (ROOT / "docs" / "warehouse.md").read_text()
README = (ROOT / "README.md").read_text()
# Issue 11: following one sales_order row from the source to the warehouse takes clearly fewer files than the
# 23 counted then (tools/trace_row.py counted 29 before the modules on the path were merged, 16 after, 17 with
# the dashboard summaries the load keeps).
ROW_PATH_LIMIT = 17


def _section(text: str, heading: str) -> str:
    """The text under a '## heading' up to the next '## '."""
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def test_warehouse_doc_lists_exactly_the_contract_tables_in_load_order() -> None:
    rows = re.findall(r"^\| `((?:dim|fact)_\w+)` \|", _section(WAREHOUSE, "Tables and their grain"), re.M)
    assert rows == list(contract.TABLES)


def test_warehouse_doc_natural_keys_are_the_contract_keys() -> None:
    keys = re.findall(r"^\| `(\w+)` \|[^|]+\| `(\w+)`", _section(WAREHOUSE, "Tables and their grain"), re.M)
    assert dict(keys) == contract.TABLE_KEYS


def test_warehouse_doc_bookkeeping_tables_and_views_exist_in_the_ddl() -> None:
    ddl = schema_sql()
    named = set(re.findall(r"`(etl\.\w+|current_\w+)`", WAREHOUSE))
    assert named, "the doc names bookkeeping tables and views"
    for name in named:
        assert re.search(rf"\b{re.escape(name)}\b", ddl), f"{name} is in docs/warehouse.md but not in schema.sql"


def test_architecture_doc_names_only_contract_names_that_exist() -> None:
    names = set(re.findall(r"`([A-Za-z_]+)`", _section(ARCHITECTURE, "One contract")))
    public = {n for n in names if n.isupper() or n[0].isupper() or n.endswith("_name") or n.startswith("check_")}
    assert public, "the doc lists the contract's names"
    missing = [n for n in public if not hasattr(contract, n)]
    assert missing == [], f"docs/architecture.md names {missing}, which shared/contract.py does not have"


def test_architecture_doc_lake_prefixes_are_the_contract_prefixes() -> None:
    layout = _section(ARCHITECTURE, "Lake layout")
    prefixes = {contract.RUNS_PREFIX, contract.STATE_PREFIX, contract.QUARANTINE_PREFIX}
    assert set(re.findall(r"`(?:raw|curated)/(_\w+/)", layout)) == prefixes
    [example] = re.findall(r"`(\d{8}T\d{6}Z-[0-9a-f]{6})`", layout)
    assert contract.check_run_id(example) == example


def test_every_path_the_docs_name_exists() -> None:
    for doc in (ARCHITECTURE, WAREHOUSE):
        for path in set(re.findall(r"`((?:shared|tests|docs)/[\w/.]*|function_app\.py)`", doc)):
            assert (ROOT / path).exists(), f"{path} is named in docs but does not exist"


def _code_settings() -> set[str]:
    source = (ROOT / "shared" / "settings.py").read_text()
    return set(re.findall(r'"([A-Z][A-Z0-9_]{3,}(?:__[A-Za-z]+)?)"', source))


def test_readme_settings_are_the_ones_the_code_or_the_host_reads() -> None:
    table = _section(README, "Settings")
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]{3,}(?:__[A-Za-z]+)?)`", table))
    infra = "".join(p.read_text() for p in (ROOT / "infra").rglob("*.tf"))
    assert _code_settings() <= documented
    # The rest are read by the Functions host (identity-based connections), set by the Terraform.
    assert all(name in infra for name in documented - _code_settings())


def test_every_command_the_readme_names_exists() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    named = set(re.findall(r"`totes (\w+)", _section(README, "The `totes` command")))
    assert named and named <= set(sub.choices)  # type: ignore[arg-type]


def _row_path() -> list[str]:
    """The files docs/architecture.md lists under "Following one sales_order row", in its order."""
    return re.findall(r"^\d+\. `([^`]+)`", _section(ARCHITECTURE, "Following one sales_order row"), re.M)


def test_the_row_path_names_each_file_once_and_stays_short() -> None:
    listed = _row_path()
    assert listed and len(set(listed)) == len(listed) <= ROW_PATH_LIMIT
    assert not set(listed) & set(OFF_PATH), "a file the doc lists is one the trace leaves off the path"


@pytest.mark.slow
def test_the_row_path_is_the_one_the_trace_finds(settings: Settings, lake: Lake) -> None:
    assert sorted(trace_row(settings, lake).path) == sorted(_row_path())

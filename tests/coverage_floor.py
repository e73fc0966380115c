"""Fail when a module of shared/ is covered below the floor: `python tests/coverage_floor.py coverage.json`.

The overall floor (90%) is coverage's own fail_under (pyproject.toml); this one keeps a single module
from hiding behind the total.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODULE_FLOOR = 80.0


def modules_below(report: dict[str, object], floor: float = MODULE_FLOOR) -> dict[str, float]:
    """Module path -> percent covered, for the modules of shared/ covered less than `floor`."""
    files = report["files"]
    assert isinstance(files, dict)
    below = {}
    for path, data in files.items():
        percent = float(data["summary"]["percent_covered"])
        if Path(path).parts[0] == "shared" and percent < floor:
            below[path] = round(percent, 1)
    return below


def main(argv: list[str]) -> int:
    """Print the modules below the floor and return 1 if there is any."""
    report = json.loads(Path(argv[1]).read_text())
    below = modules_below(report)
    for path, percent in sorted(below.items()):
        print(f"coverage of {path} is {percent}%, below the {MODULE_FLOOR:g}% floor of every module of shared/")
    total = report["totals"]["percent_covered"]
    if not below:
        print(f"coverage {total:.1f}% overall; every module of shared/ at {MODULE_FLOOR:g}% or more")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Fixtures over the repository's infrastructure files: the parsed Terraform of infra/ and the tools.

Terraform is parsed with the `hcl2` module. Two distributions install that module: python-hcl2
(quoted labels and strings, plain attribute values) and bc-python-hcl2, which checkov depends on
(attribute values wrapped in one-element lists). Whichever wins in the virtualenv, `normalize`
turns its output into one shape: labels and strings unquoted, blocks as lists of dicts, heredocs
as their text, no parser metadata.
"""

from __future__ import annotations

import re
import shutil
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
WORKFLOWS = ROOT / ".github" / "workflows"

_META_KEYS = {"__start_line__", "__end_line__", "__is_block__", "__comments__", "__inline_comments__"}
_HEREDOC = re.compile(r"^<<(-?)([A-Za-z_][A-Za-z0-9_]*)\n(.*)\n\s*\2\s*$", re.DOTALL)

# Block types that can repeat inside a resource; with bc-python-hcl2 a map attribute and a block
# look alike, so `blocks()` and `attr()` below accept either shape.
_WRAPPED = "bc" if getattr(hcl2, "__version__", "").startswith("0.") else "py"


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
    heredoc = _HEREDOC.match(value)
    if heredoc:
        body = heredoc.group(3)
        value = textwrap.dedent(body) if heredoc.group(1) else body
    return value


def normalize(node: Any) -> Any:
    """One parser output (either hcl2 distribution) in, the canonical shape out."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _META_KEYS:
                continue
            value = normalize(value)
            if _WRAPPED == "bc" and isinstance(value, list) and len(value) == 1 and not isinstance(value[0], dict):
                value = value[0]
            out[_unquote(key)] = value
        return out
    if isinstance(node, list):
        return [normalize(item) for item in node]
    if isinstance(node, str):
        return _unquote(node)
    return node


def attr(body: dict[str, Any], key: str, default: Any = None) -> Any:
    """The value of attribute `key` of a block body (a map attribute comes back as a dict)."""
    value = body.get(key, default)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        return value[0]
    return value


def blocks(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The nested blocks `key` of a block body, as a list (empty when there is none)."""
    value = body.get(key, [])
    if isinstance(value, dict):
        return [value]
    return [item for item in value if isinstance(item, dict)]


@dataclass
class Terraform:
    """The parsed configuration of infra/: every top-level block by kind, type and name."""

    files: dict[str, str]
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    ephemeral: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: list[dict[str, Any]] = field(default_factory=list)

    def resource(self, type_: str, name: str) -> dict[str, Any]:
        """The body of resource `type_.name`; fails the test when it is missing."""
        found = self.resources.get(type_, {}).get(name)
        assert found is not None, f"resource {type_}.{name} is missing from infra/"
        return found

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        """Every resource of one type, by name."""
        return self.resources.get(type_, {})

    @property
    def text(self) -> str:
        """All .tf sources concatenated, for checks on the raw text."""
        return "\n".join(self.files.values())


def _add_labelled(target: dict[str, dict[str, dict[str, Any]]], entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        for type_, by_name in entry.items():
            for name, body in by_name.items():
                target.setdefault(type_, {})[name] = body


def load_terraform(directory: Path) -> Terraform:
    """Parse every .tf file of `directory` (not recursive, like Terraform) into a Terraform."""
    files = {path.name: path.read_text() for path in sorted(directory.glob("*.tf"))}
    assert files, f"no .tf files in {directory}"
    config = Terraform(files=files)
    for name, source in files.items():
        try:
            parsed = normalize(hcl2.loads(source))
        except Exception as error:  # the parser's own exception types differ by distribution
            pytest.fail(f"{name} does not parse as HCL: {error}")
        _add_labelled(config.resources, parsed.get("resource", []))
        _add_labelled(config.data, parsed.get("data", []))
        _add_labelled(config.ephemeral, parsed.get("ephemeral", []))
        for entry in parsed.get("variable", []):
            config.variables.update(entry)
        for entry in parsed.get("output", []):
            config.outputs.update(entry)
        for entry in parsed.get("locals", []):
            config.locals.update({key: attr(entry, key) for key in entry})
        for entry in parsed.get("provider", []):
            config.providers.update(entry)
        config.settings.extend(parsed.get("terraform", []))
    return config


@pytest.fixture(scope="session")
def terraform() -> Terraform:
    """The parsed Terraform configuration of infra/."""
    return load_terraform(INFRA)


def find_tool(name: str) -> str:
    """Path of a command-line tool from the running virtualenv, else PATH; a missing tool fails."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not installed: run `make setup` (it is a dev dependency in pyproject.toml)")
    return found


@pytest.fixture(scope="session")
def workflow_files() -> Iterator[list[Path]]:
    """Every workflow file in .github/workflows."""
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert files, "no workflow files in .github/workflows"
    yield files

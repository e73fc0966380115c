"""A small reader of the KQL in infra/kql: tokens, statements, the tables read and the operators piped
through. Enough to check a query's shape offline (balanced brackets, closed strings, statements that start
from a known table, known operators, the strings it filters on), not a full Kusto parser."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import pairwise

TOKEN = re.compile(
    r"""(?P<comment>//[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
      | (?P<number>\d+(?:\.\d+)?(?:ms|s|m|h|d)?)
      | (?P<template>\$\{[a-z_.]+\})
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:-[a-z]+)?)
      | (?P<op>==|!=|=~|<=|>=|[|(),;=<>*/+\-.\[\]{}:!])
      | (?P<space>\s+)
      | (?P<bad>.)""",
    re.VERBOSE,
)
TABLES = {
    "requests", "exceptions", "customMetrics", "traces", "dependencies",
    "AppMetrics", "AppTraces", "AppRequests", "AppExceptions", "StorageQueueLogs",
}  # fmt: skip
OPERATORS = {
    "where", "project", "project-away", "extend", "summarize", "distinct", "order", "sort", "join", "union",
    "top", "take", "count", "render", "mv-expand", "make-series",
}  # fmt: skip
PAIRS = {"(": ")", "[": "]", "{": "}"}


class KqlError(ValueError):
    """The text is not well-formed KQL as far as this reader checks."""


@dataclass
class Query:
    """What one KQL text holds."""

    tables: set[str] = field(default_factory=set)
    lets: set[str] = field(default_factory=set)
    operators: list[str] = field(default_factory=list)
    strings: list[str] = field(default_factory=list)


def tokenize(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens without spaces and comments; KqlError on a stray character or an open bracket."""
    tokens: list[tuple[str, str]] = []
    stack: list[str] = []
    for match in TOKEN.finditer(text):
        kind, value = match.lastgroup or "", match.group()
        if kind == "bad":
            raise KqlError(f"unexpected character {value!r} at offset {match.start()}")
        if kind in ("space", "comment"):
            continue
        if value in PAIRS:
            stack.append(PAIRS[value])
        elif value in PAIRS.values() and (not stack or stack.pop() != value):
            raise KqlError(f"unbalanced {value!r} at offset {match.start()}")
        tokens.append((kind, value))
    if stack:
        raise KqlError(f"unclosed bracket(s), expected {''.join(reversed(stack))!r}")
    return tokens


def parse(text: str) -> Query:
    """Tables, let names, piped operators and string literals of a KQL text; KqlError if malformed."""
    tokens = tokenize(text)
    query = Query(strings=[v[1:-1] for k, v in tokens if k == "string"])
    statements: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for token in tokens:
        depth += token[1] in PAIRS
        depth -= token[1] in PAIRS.values()
        if token[1] == ";" and depth == 0:
            statements.append([])
        else:
            statements[-1].append(token)
    statements = [s for s in statements if s]
    if not statements or statements[-1][0][1] == "let":
        raise KqlError("a query must end with a tabular statement")
    for number, statement in enumerate(statements):
        body = statement
        if statement[0][1] == "let":
            if len(statement) < 4 or statement[1][0] != "name" or statement[2][1] != "=":
                raise KqlError(f"malformed let statement: {' '.join(v for _, v in statement[:4])}")
            query.lets.add(statement[1][1])
            body = statement[3:]
            if body[0][0] != "name" or (len(body) > 1 and body[1][1] == "("):  # a scalar: a value or a call
                query.operators += [v for (_, p), (_, v) in pairwise(body) if p == "|"]
                continue
        elif number != len(statements) - 1:
            raise KqlError("only let statements may come before the last statement")
        _read_tabular(body, query)
    return query


def _read_tabular(tokens: list[tuple[str, str]], query: Query) -> None:
    first = tokens[0][1]
    if first not in TABLES and first not in query.lets and first != "union":
        raise KqlError(f"a tabular statement must start with a table, a let name or union, not {first!r}")
    for i, (kind, value) in enumerate(tokens):
        if i and tokens[i - 1][1] == "|":
            if value not in OPERATORS:
                raise KqlError(f"unknown operator after '|': {value!r}")
            query.operators.append(value)
        elif kind == "name" and value in TABLES:
            query.tables.add(value)

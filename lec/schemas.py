"""The published JSON Schemas (``schemas/``) and the registry's SQL, loaded and checked."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
NAMES = ("raw-envelope", "reading", "deadletter", "feedback", "anomaly", "anchor", "urbandataset")


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def errors(name: str, record: Any) -> list[str]:
    """Human-readable validation errors of ``record`` against schema ``name`` (empty = valid)."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator(name).iter_errors(record), key=lambda e: list(e.absolute_path))]


def registry_ddl(dialect_name: str) -> str:
    """CREATE statements of the registry for ``sqlite`` or ``postgresql``, as published in schemas/."""
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateTable

    from lec.registry.schema import metadata

    dialect = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}[dialect_name]
    parts = [f"-- LEC registry schema (seed tables 6-26), {dialect_name}. Generated from lec/registry/schema.py;"
             " tests check it is current.\n"]
    for table in metadata.sorted_tables:
        parts.append(str(CreateTable(table).compile(dialect=dialect)).strip() + ";\n")
    return "\n".join(parts)

"""The README's table of request bodies is the OpenAPI document's, field for field: every
required and every optional field of every body the server accepts. When a schema changes,
this test fails and prints the table to paste."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.conftest import ROOT

START, END = "<!-- request-bodies:start -->", "<!-- request-bodies:end -->"


def requirement(branch: dict[str, Any]) -> str:
    """One ``anyOf`` branch as words: its required fields, its nested choices, its condition
    (``otp if mfa_enabled=true``)."""
    text = " and ".join(branch.get("required", []))
    if "anyOf" in branch:
        choice = " or ".join(requirement(b) for b in branch["anyOf"])
        text = f"{text} and ({choice})" if text else f"({choice})"
    conditions = [
        f"{name}={json.dumps(rule['const'])}"
        for name, rule in branch.get("properties", {}).items()
        if "const" in rule
    ]
    return f"{text} if {', '.join(conditions)}" if conditions else text


def named_in(branches: list[dict[str, Any]]) -> set[str]:
    names: set[str] = set()
    for branch in branches:
        names.update(branch.get("required", []))
        names.update(named_in(branch.get("anyOf", [])))
    return names


def fields_of(schema: dict[str, Any], components: dict[str, Any]) -> tuple[list[str], list[str]]:
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    properties = sorted(schema.get("properties", {}))
    required = set(schema.get("required", []))
    branches = schema.get("anyOf", [])
    shown_required = [f for f in properties if f in required]
    if branches:
        shown_required.append(" or ".join(requirement(b) for b in branches))
    chosen = named_in(branches)
    optional = [f for f in properties if f not in required and f not in chosen]
    return shown_required, optional


def bodies_table(document: dict[str, Any]) -> str:
    components = document.get("components", {}).get("schemas", {})
    rows = ["| Route | Body | Required | Optional |", "|---|---|---|---|"]
    seen: dict[tuple[str, ...], list[str]] = {}
    for path, operations in sorted(document["paths"].items()):
        for method, operation in sorted(operations.items()):
            body = operation.get("requestBody")
            if not body:
                continue
            ((kind, content),) = body["content"].items()
            required, optional = fields_of(content["schema"], components)
            short = "JSON" if kind == "application/json" else "form"
            key = (short, ", ".join(f"`{f}`" for f in required) or "–", ", ".join(optional) or "–")
            seen.setdefault(key, []).append(f"`{method.upper()} {path}`")
    for (kind, required, optional), routes in seen.items():
        optional_cell = (
            ", ".join(f"`{f}`" for f in optional.split(", ")) if optional != "–" else "–"
        )
        rows.append(f"| {', '.join(routes)} | {kind} | {required} | {optional_cell} |")
    return "\n".join(rows)


async def test_the_readme_lists_every_body_field_as_the_document_does(client: Any) -> None:
    document = await (await client.get("/openapi.json")).get_json()
    expected = bodies_table(document)
    readme = (ROOT / "README.md").read_text()
    found = re.search(re.escape(START) + r"\n(.*?)\n" + re.escape(END), readme, re.S)
    assert found, f"README.md has no {START} … {END} table"
    assert found.group(1).strip() == expected, f"README.md should list:\n\n{expected}\n"

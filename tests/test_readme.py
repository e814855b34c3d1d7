"""The README's table of request bodies is the OpenAPI document's, field for field: every
required and every optional field of every body the server accepts. When a schema changes,
this test fails and prints the table to paste."""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import ROOT

START, END = "<!-- request-bodies:start -->", "<!-- request-bodies:end -->"


def fields_of(schema: dict[str, Any], components: dict[str, Any]) -> tuple[list[str], list[str]]:
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[1]]
    properties = sorted(schema.get("properties", {}))
    required = set(schema.get("required", []))
    one_of = [b["required"][0] for b in schema.get("anyOf", []) if b.get("required")]
    shown_required = [f for f in properties if f in required]
    if one_of:
        shown_required.append(" or ".join(one_of))
    optional = [f for f in properties if f not in required and f not in one_of]
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

"""``GET /docs``: the OpenAPI schema as one readable page that needs nothing from another site.

FastAPI's own viewer (Swagger UI) loads its scripts from a CDN, which shows a blank page on a machine without
internet; this page is drawn on the server from ``app.openapi()`` — every endpoint, its summary, its request fields
(name, type, default, limits) and its responses — with a link to the raw schema at ``/openapi.json``.
"""

from __future__ import annotations

import html
import json
from typing import Any

STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2937}"
    "h2{font-size:1.05rem;margin:1.6rem 0 .3rem}code,td{font-family:ui-monospace,monospace;font-size:13px}"
    ".m{display:inline-block;min-width:3.5rem;font-weight:600;color:#fff;background:#3b5b92;border-radius:4px;"
    "text-align:center;margin-right:.5rem}.post{background:#2a7d5f}table{border-collapse:collapse;margin:.3rem 0}"
    "td,th{border:1px solid #d1d5db;padding:.2rem .5rem;text-align:left}"
)


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def _type(field: dict[str, Any]) -> str:
    if "anyOf" in field:
        return " | ".join(_type(option) for option in field["anyOf"])
    if "$ref" in field:
        return field["$ref"].rsplit("/", 1)[-1]
    return str(field.get("type", "any"))


def _limits(field: dict[str, Any]) -> str:
    keys = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength")
    parts = [f"{key} {field[key]}" for key in keys if key in field]
    for option in field.get("anyOf", []):
        parts += [f"{key} {option[key]}" for key in keys if key in option]
    return ", ".join(parts)


def _fields(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td>{html.escape(name)}{' *' if name in required else ''}</td><td>{html.escape(_type(field))}</td>"
        f"<td>{html.escape(json.dumps(field['default'])) if 'default' in field else ''}</td>"
        f"<td>{html.escape(_limits(field))}</td><td>{html.escape(field.get('description', ''))}</td></tr>"
        for name, field in schema.get("properties", {}).items()
    )
    head = "<tr><th>field (* required)</th><th>type</th><th>default</th><th>limits</th><th></th></tr>"
    return f"<table>{head}{rows}</table>" if rows else ""


def docs_page(spec: dict[str, Any]) -> str:
    """The page for an OpenAPI ``spec`` (the dict ``app.openapi()`` returns)."""
    info = spec.get("info", {})
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(info.get('title', 'API'))}"
        f" — API</title><style>{STYLE}</style></head><body><h1>{html.escape(info.get('title', 'API'))}</h1>",
        f"<p>{html.escape(info.get('summary', ''))} The raw schema: <a href='/openapi.json'>/openapi.json</a>.</p>",
    ]
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            parts.append(
                f"<h2><span class='m {method}'>{method.upper()}</span><code>{html.escape(path)}</code></h2>"
                f"<p>{html.escape(op.get('summary', ''))}</p>"
            )
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is not None:
                parts.append("<p>JSON body:</p>" + _fields(_resolve(body, spec)))
            codes = ", ".join(f"{code} {html.escape(r.get('description', ''))}" for code, r in op["responses"].items())
            parts.append(f"<p>responses: {codes}</p>")
    parts.append("</body></html>")
    return "".join(parts)

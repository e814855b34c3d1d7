"""The interactive API docs, served from our own files: Swagger UI at ``/docs`` and ReDoc at
``/redocs``, on the document at ``/openapi.json``.

The viewer bundles are pinned npm packages (``assets/package.json``) copied into
``static/vendor`` at install time; no CDN is involved and no inline script runs. Swagger UI
works under the site's CSP as it is. ReDoc injects two ``<style>`` elements (an empty one that
styled-components fills through CSSOM, and a fixed block of CSS of its own): they are allowed by
their SHA-256 hashes, for this page only, together with ``worker-src blob:`` for its search
worker. The hashes belong to ReDoc 2.5.4: re-check them (the browser test fails on a CSP
violation) when upgrading it.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template

from issuer.web.observe import CSP
from issuer.web.openapi import html_page

blueprint = Blueprint("docs", __name__)
REDOC_STYLE_HASHES = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' "  # "" (the empty <style>)
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='"  # redoc 2.5.4's own CSS block
)
REDOC_CSP = CSP.replace("style-src 'self'", f"style-src 'self' {REDOC_STYLE_HASHES}") + (
    "; worker-src blob:"
)


@blueprint.get("/docs")
@html_page()
async def swagger_ui() -> Any:
    """Swagger UI on this server's OpenAPI document."""
    return await render_template("docs/swagger.html")


@blueprint.get("/redocs")
@html_page()
async def redoc_ui() -> Any:
    """ReDoc on this server's OpenAPI document."""
    body = await render_template("docs/redoc.html")
    return body, 200, {"Content-Security-Policy": REDOC_CSP}

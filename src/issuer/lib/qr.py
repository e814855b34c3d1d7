"""QR codes as inline SVG (segno): one per visitor, rendered in memory, never a shared file."""

from __future__ import annotations

import segno


def qr_svg(content: str, *, title: str = "QR code") -> str:
    """Render ``content`` as an ``<svg>`` element (no XML declaration), ~4 px per module.

    CPU-bound for long invitations (~1–3 ms): call it through ``asyncio.to_thread``.
    """
    code = segno.make(content, error="m")
    return str(code.svg_inline(scale=4, border=2, title=title, svgclass="qr", lineclass=None))

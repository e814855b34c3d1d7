"""QR codes as inline SVG (segno): one per visitor, rendered in memory, never a shared file."""

from __future__ import annotations

import base64
import io

import segno

# segno scores all eight data masks to pick the best one, which is 3/4 of the work for a
# 600-character invitation (~40 ms of pure-Python CPU, on the page's hot path). Every mask is
# valid (ISO/IEC 18004 §7.8); mask 0 with error correction M scans fine from a screen and
# costs ~10 ms.
MASK = 0


def qr_svg(content: str, *, title: str = "QR code") -> str:
    """Render ``content`` as an ``<svg>`` element (no XML declaration), ~4 px per module.

    CPU-bound (~10 ms for a 600-character invitation): call it through ``asyncio.to_thread``.
    """
    code = segno.make(content, error="m", mask=MASK)
    return str(code.svg_inline(scale=4, border=2, title=title, svgclass="qr", lineclass=None))


def qr_png_base64(content: str, *, scale: int = 6) -> str:
    """Render ``content`` as a PNG, base64-encoded (004's ``/qrcode`` answer). The best mask is
    searched (a short ``otpauth://`` URI makes that cheap). CPU-bound: use a thread."""
    buffer = io.BytesIO()
    segno.make(content, error="m").save(buffer, kind="png", scale=scale, border=4)
    return base64.b64encode(buffer.getvalue()).decode()

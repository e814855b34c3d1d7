"""Posts are text: shown escaped, with their line breaks, and with http(s) links made
clickable (``rel="nofollow noopener noreferrer"``); nothing a writer types becomes markup."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

# A URL up to whitespace or a character that cannot end one (after escaping: no < > " ').
LINK = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)\]]")


def linkify(text: str) -> Markup:
    """HTML of ``text``: escaped, links as anchors, line breaks as ``<br>``."""
    out = []
    last = 0
    for found in LINK.finditer(text):
        out.append(escape(text[last : found.start()]))
        url = escape(found.group(0))
        out.append(Markup('<a href="{0}" rel="nofollow noopener noreferrer">{0}</a>').format(url))
        last = found.end()
    out.append(escape(text[last:]))
    html = Markup("").join(out)
    return html.replace("\r\n", "\n").replace("\n", Markup("<br>\n"))

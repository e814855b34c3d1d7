"""The adapters that patch libraries' internals (``issuer.web.server``, ``issuer.sqlite``)
refuse versions they were not tested with, and accept the installed ones."""

from __future__ import annotations

import pytest

from issuer import sqlite
from issuer.lib.versions import require_tested
from issuer.web import server


def test_the_installed_versions_are_the_tested_ones() -> None:
    server.check_versions()
    sqlite.check_versions()


def test_an_untested_version_stops_the_start() -> None:
    with pytest.raises(RuntimeError, match=r"hypercorn .* is not a version issuer/x\.py was"):
        require_tested({"hypercorn": ("0.17.", "9.")}, "issuer/x.py")

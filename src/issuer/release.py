"""Which build is running: the package version and the git revision it was built from.

Shown by ``GET /health`` and the ``issuer_build_info`` metric (``issuer.ops.routes``), read once
when the app is built, never per request and never by running ``git``.

The revision comes from ``ISSUER_GIT_REVISION`` (the image sets it from its ``GIT_REVISION``
build argument); when that is empty, from a ``REVISION`` file next to this module (the image's
build writes it into the installed package); else it is ``"unknown"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Keep equal to pyproject.toml's version and the Dockerfile's VERSION default (tested).
VERSION = "0.1.0"
UNKNOWN = "unknown"
REVISION_FILE = Path(__file__).with_name("REVISION")
# A commit id (40 or 64 hex digits, or abbreviated), or what `git describe --dirty` prints.
REVISION = re.compile(r"[0-9A-Za-z][0-9A-Za-z._+/-]{0,127}")


def git_revision(configured: str = "", revision_file: Path = REVISION_FILE) -> str:
    """``configured`` (``ISSUER_GIT_REVISION``), else the first line of ``revision_file``, else
    ``"unknown"``. Raises ``ValueError`` when the value found is not revision-like (1–128 of
    letters, digits and ``._+/-``), so a garbled build stops at start-up like any bad setting."""
    value, source = configured.strip(), "ISSUER_GIT_REVISION"
    if not value:
        try:
            lines = revision_file.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            lines = []
        value, source = (lines[0].strip() if lines else ""), str(revision_file)
    if not value:
        return UNKNOWN
    if not REVISION.fullmatch(value):
        raise ValueError(f"{source}: {value[:40]!r} is not a git revision")
    return value


@dataclass(frozen=True, slots=True)
class Release:
    """``version`` (``VERSION``) and ``revision`` (``git_revision()``) of the running build."""

    version: str
    revision: str

    @classmethod
    def current(cls, configured_revision: str = "") -> Release:
        """This build; ``configured_revision`` is ``settings.git_revision``."""
        return cls(VERSION, git_revision(configured_revision))

    @property
    def name(self) -> str:
        """``0.1.0+3f2c1ab`` (SemVer build metadata), or just the version when unknown."""
        return self.version if self.revision == UNKNOWN else f"{self.version}+{self.revision}"

"""What the tests that run real npm packages under Node share: the pinned package must be in
its folder's ``node_modules`` (the tests fail, never skip, when it is not), and ``node``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def package_ready(folder: Path, package: str, version: str) -> bool:
    """True when ``folder/node_modules`` holds ``package`` at exactly ``version``."""
    manifest = folder / "node_modules" / package / "package.json"
    try:
        return bool(json.loads(manifest.read_text()).get("version") == version)
    except (OSError, ValueError):
        return False


def require_package(folder: Path, package: str, version: str) -> None:
    """Fail (never skip) when the pinned npm package is not installed."""
    if not package_ready(folder, package, version):
        where = folder.relative_to(Path(__file__).resolve().parents[2])
        raise RuntimeError(
            f"{package} {version} is not installed in {folder}/node_modules: run `npm ci` in "
            f"{where} (or `make test`, which does it)"
        )


def node_binary(needed_by: str) -> str:
    node = os.environ.get("NODE_BIN") or shutil.which("node")
    if not node:
        raise RuntimeError(f"node is not on PATH (set NODE_BIN): {needed_by} needs Node.js")
    return node

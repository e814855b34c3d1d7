"""Copy the pinned browser bundles from ``assets/node_modules`` (after ``npm ci``) into
``src/issuer/static/vendor``, the only files of them the pages load, and check that what
``node_modules`` holds is exactly what ``package-lock.json`` pins. Standard library only.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEST = HERE.parent / "src" / "issuer" / "static" / "vendor"
# package -> (files in the package, folder under static/vendor)
FILES = {
    "swagger-ui-dist": (
        ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"],
        "swagger-ui",
    ),
    "redoc": (["bundles/redoc.standalone.js", "LICENSE"], "redoc"),
    "pusher-js": (["dist/web/pusher.min.js", "LICENCE"], "pusher-js"),
}


def main() -> int:
    lock = json.loads((HERE / "package-lock.json").read_text())
    versions = {}
    for package, (files, folder) in FILES.items():
        pinned = lock["packages"][f"node_modules/{package}"]["version"]
        installed = json.loads((HERE / "node_modules" / package / "package.json").read_text())
        if installed["version"] != pinned:
            print(
                f"{package} {installed['version']} is installed, {pinned} pinned: npm ci",
                file=sys.stderr,
            )
            return 1
        target = DEST / folder
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for name in files:
            shutil.copyfile(HERE / "node_modules" / package / name, target / Path(name).name)
        versions[package] = pinned
    (DEST / "VERSIONS.json").write_text(json.dumps(versions, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The versions of the libraries whose internals an adapter relies on."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import version


def require_tested(tested: Mapping[str, tuple[str, ...]], adapter: str) -> None:
    """Refuse to start with a version of a package in ``tested`` (name → version prefixes) that
    ``adapter`` (its module, named in the error) was not tested with: an upgrade then fails
    loudly at start-up instead of silently changing behaviour."""
    for package, prefixes in tested.items():
        found = version(package)
        if not found.startswith(prefixes):
            raise RuntimeError(
                f"{package} {found} is not a version {adapter} was tested with "
                f"({', '.join(p + 'x' for p in prefixes)})"
            )

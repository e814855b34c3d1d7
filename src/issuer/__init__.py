"""issuer: credential issuance portal and accounts API on Quart.

Importing the package imports nothing else: hypercorn's master (``python -m issuer.serve``)
imports ``issuer`` before it spawns the workers, and only the workers need the app (importing
it costs ~1.5 s of CPU and ~95 MB). ``issuer:create_app()`` builds it in each worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quart import Quart

    from issuer.clock import Clock
    from issuer.issuance.agents.base import Agent

__all__ = ["create_app"]


def create_app(
    overrides: dict[str, Any] | None = None,
    *,
    agent: Agent | None = None,
    clock: Clock | None = None,
) -> Quart:
    """:func:`issuer.app.create_app`, imported when first called."""
    from issuer.app import create_app as build

    return build(overrides, agent=agent, clock=clock)

"""Typed access to the app's services and settings from route code."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import current_app

if TYPE_CHECKING:
    from issuer.config import Settings
    from issuer.services import Services

EXTENSION = "issuer"


def services() -> Services:
    """The services of the app handling this request (built by ``create_app``)."""
    found: Services = current_app.extensions[EXTENSION]
    return found


def settings() -> Settings:
    return services().settings

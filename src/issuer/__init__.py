"""issuer: credential issuance portal and accounts API on Quart."""

from issuer.app import create_app

__all__ = ["create_app"]

"""issuer: credential issuance portal, accounts and posts API on Quart."""

from issuer.app import create_app

__all__ = ["create_app"]

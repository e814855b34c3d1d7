"""``quart --app issuer import-users users.yaml``: 001's plain-text ``username: password`` file.

Passwords are hashed (argon2id) on the way in; users that already exist are left alone, so the
import can run twice without duplicates.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
import yaml
from quart import Quart

from issuer.accounts.identifiers import valid_username
from issuer.accounts.service import NewAccount
from issuer.web.context import services


def register_cli(app: Quart) -> None:
    @app.cli.command("import-users")
    @click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def import_users(path: Path) -> None:
        """Import 001's users.yaml (username: password pairs), hashing every password."""
        # BaseLoader keeps every value a string: "0123", "12:30" or "yes" are passwords here.
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}  # noqa: S506
        if not isinstance(data, dict):
            raise click.ClickException("expected a mapping of username: password")
        created, skipped, invalid = asyncio.run(_import(app, data))
        click.echo(f"imported {created}, already present {skipped}, invalid {invalid}")


async def _import(app: Quart, data: dict[object, object]) -> tuple[int, int, int]:
    created = skipped = invalid = 0
    async with app.app_context():
        found = services()
        try:
            for username, password in data.items():
                name, secret = str(username), "" if password is None else str(password)
                if not valid_username(name) or not secret:
                    invalid += 1
                    continue
                if await found.accounts.username_taken(name):
                    skipped += 1
                    continue
                # Legacy passwords may be shorter than today's minimum: they keep working (the
                # password rules belong to the request schemas, not to this import).
                user = await found.accounts.register(NewAccount(secret, username=name))
                created += user is not None
                skipped += user is None
        finally:
            await found.close()
    return created, skipped, invalid

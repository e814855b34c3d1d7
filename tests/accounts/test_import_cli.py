"""``quart --app issuer import-users users.yaml``: 001's plain-text users, hashed on import."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from tests.accounts.conftest import login, running
from tests.conftest import migrate

USERS_YAML = """\
# users_db/users.yaml of 001: username: password, in plain text
user1: password1
user2: password2
Admin: "pass word with spaces"
numeric: 12345678
"not a valid name!": whatever
nopassword:
"""
IMPORTED = {"user1": "password1", "user2": "password2", "Admin": "pass word with spaces"}


def import_users(database_url: str, path: Path) -> str:
    env = {
        **os.environ,
        "ISSUER_DATABASE_URL": database_url,
        "ISSUER_ENV": "development",
        "ISSUER_SECRET_KEY": secrets.token_urlsafe(32),
        "ISSUER_LOG_LEVEL": "WARNING",
    }
    quart = Path(sys.executable).with_name("quart")
    done = subprocess.run(
        [str(quart), "--app", "issuer", "import-users", str(path)],
        cwd=path.parent,  # no stray .env
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_import_users_twice(tmp_path: Path) -> None:
    database = tmp_path / "import.db"
    url = f"sqlite+aiosqlite:///{database}"
    await _migrate(url)
    users = tmp_path / "users.yaml"
    users.write_text(USERS_YAML, encoding="utf-8")

    assert "imported 4, already present 0, invalid 2" in import_users(url, users)
    assert "imported 0, already present 4, invalid 2" in import_users(url, users)

    engine = create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        rows: dict[str, str] = dict(
            conn.execute(text("SELECT username, password_hash FROM users")).all()
        )
    engine.dispose()
    assert sorted(rows) == ["Admin", "numeric", "user1", "user2"]
    for username, encoded in rows.items():
        assert encoded.startswith("$argon2id$"), username
        assert IMPORTED.get(username, "12345678") not in encoded

    overrides = {"env": "test", "database_url": url, "secret_key": secrets.token_urlsafe(32)}
    async with running({**overrides, "agent": None, "sweep_interval": 3600}) as app:
        client = app.test_client()
        for username, password in {**IMPORTED, "numeric": "12345678"}.items():
            response = await login(client, username, password)
            assert response.status_code == 200, (username, await response.get_data(as_text=True))
        assert (await login(client, "user1", "password2")).status_code == 401


async def _migrate(url: str) -> None:
    """Alembic's async env runs its own event loop: do it in a thread."""
    await asyncio.to_thread(migrate, url)

"""The original accounts API as it ran: Flask + PyJWT + psycopg2 under one gunicorn sync worker.

Routes (001 and 003, on our schema so that both servers read the same rows):

* ``GET /health`` → ``{"status": "ok"}``.
* ``POST /login`` — JSON ``{"username" or "email", "password"}``: the user is looked up by its
  normalised username or email (``users.username_key`` / ``email_key``, NFKC + casefold as ours),
  the argon2id hash verified on the request's thread (with our parameters, ``LEGACY_ARGON2_*``),
  then one transaction inserts a ``login_sessions`` row and stamps ``users.last_login_at``.
  200 ``{"token", "access_token", "refresh_token"}``: HS256 JWTs with our claims (``sub`` = the
  user's entity id as hex, ``sid``, ``jti``, ``iat``, ``exp``, ``iss``, ``aud``, ``typ``), signed
  with ``LEGACY_SECRET_KEY``. Bad credentials: 401 ``{"message": "Authentication failed"}``.
* ``GET /auth/status`` — 003's ``UserAPI``: decode the bearer token, then its revocation lookup
  (our ``login_sessions`` row by the token's ``sid``, in place of 003's ``blacklist_tokens``) and
  its user lookup, two ``SELECT`` s → ``{"status": "success", "data": {user_id, email, username,
  admin, registered_on}}``.
* ``POST /generate_array`` — 001's ``token_required`` with the same two lookups (ours resolves
  the login session on every call), JSON ``{"sentence"}`` → 500 floats seeded by its SHA-256.

Token refusals keep the originals' 401 messages (``Token is missing``, ``Token has expired``,
``Invalid token``, ``Bearer token malformed.``, ``Token blacklisted. Please log in again.``).
What the originals did and this does too: one database connection per worker process, opened on
first use (a sync worker serves one request at a time), the transaction ended when the request
ends; argon2 on the request thread. What ours does and this does not: the per-user quota of
``/generate_array`` (001 documented one but never enforced it), the outbox event of a login, and
the access log.

Environment: ``LEGACY_DATABASE_DSN`` (libpq DSN), ``LEGACY_SECRET_KEY``, ``LEGACY_ARGON2_TIME_COST``
(2), ``LEGACY_ARGON2_MEMORY_KIB`` (19456), ``LEGACY_ARGON2_PARALLELISM`` (1), ``LEGACY_JWT_ISSUER``
(``issuer``), ``LEGACY_JWT_AUDIENCE`` (``issuer-api``).

Run: ``gunicorn --workers 1 --worker-class sync bench.legacy.accounts:app``.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

import jwt
import psycopg2
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import Type
from flask import Flask, g, jsonify, request

app = Flask(__name__)
SECRET = os.environ["LEGACY_SECRET_KEY"].encode()
DSN = os.environ["LEGACY_DATABASE_DSN"]
ISSUER = os.environ.get("LEGACY_JWT_ISSUER", "issuer")
AUDIENCE = os.environ.get("LEGACY_JWT_AUDIENCE", "issuer-api")
ACCESS_TTL = 1800  # 001's 30 minutes
SESSION_TTL = timedelta(days=30)
CLAIMS = ["sub", "sid", "jti", "iat", "exp", "iss", "aud", "typ"]
DIMENSIONS = 500
hasher = PasswordHasher(
    time_cost=int(os.environ.get("LEGACY_ARGON2_TIME_COST", "2")),
    memory_cost=int(os.environ.get("LEGACY_ARGON2_MEMORY_KIB", str(19 * 1024))),
    parallelism=int(os.environ.get("LEGACY_ARGON2_PARALLELISM", "1")),
    type=Type.ID,
)

_connection: Any = None


def db() -> Any:
    """This worker's one connection, opened on first use (after gunicorn forked the worker)."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg2.connect(DSN, application_name="legacy-accounts")
    return _connection


@app.teardown_request
def end_transaction(exc: BaseException | None) -> None:
    """Whatever the request left open is rolled back (Flask-SQLAlchemy's ``session.remove()``)."""
    if _connection is not None and not _connection.closed:
        _connection.rollback()


def refused(message: str) -> Any:
    return jsonify({"message": message}), 401


def key_of(identifier: str) -> str:
    return unicodedata.normalize("NFKC", identifier).strip().casefold()


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """001's decorator, plus 003's revocation lookup: the login session row, then its user."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization")
        if not header:
            return refused("Token is missing")
        parts = header.split(" ")
        if len(parts) != 2 or parts[0].lower() not in ("bearer", "basic") or not parts[1]:
            return refused("Bearer token malformed.")
        try:
            claims = jwt.decode(
                parts[1],
                SECRET,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            return refused("Token has expired")
        except jwt.PyJWTError:
            return refused("Invalid token")
        if claims["typ"] != "access":
            return refused("Invalid token")
        cursor = db().cursor()
        cursor.execute(
            "SELECT user_id, expires_at, revoked_at FROM login_sessions WHERE id = %s",
            (claims["sid"],),
        )
        row = cursor.fetchone()
        if row is None or row[2] is not None or row[1] <= datetime.now(UTC):
            return refused("Token blacklisted. Please log in again.")
        cursor.execute(
            "SELECT id, entity_id, email, username, admin, created_at, active FROM users"
            " WHERE id = %s",
            (row[0],),
        )
        user = cursor.fetchone()
        if user is None or not user[6] or user[1].replace("-", "") != claims["sub"]:
            return refused("Token blacklisted. Please log in again.")
        g.user = user
        return view(*args, **kwargs)

    return wrapper


@app.get("/health")
def health() -> Any:
    return jsonify({"status": "ok"})


@app.post("/login")
def login() -> Any:
    data = request.get_json(silent=True) or {}
    identifier = data.get("username") or data.get("email")
    password = data.get("password")
    if not isinstance(identifier, str) or not isinstance(password, str):
        return jsonify({"message": "Username and password are required"}), 400
    connection = db()
    cursor = connection.cursor()
    key = key_of(identifier)
    cursor.execute(
        "SELECT id, entity_id, password_hash, active FROM users"
        " WHERE email_key = %s OR username_key = %s LIMIT 1",
        (key, key),
    )
    user = cursor.fetchone()
    if user is None or not user[2] or not user[3]:
        return refused("Authentication failed")
    try:
        hasher.verify(user[2], password)
    except (VerificationError, InvalidHashError):
        return refused("Authentication failed")
    now = datetime.now(UTC)
    sid, refresh_jti = secrets.token_urlsafe(24), secrets.token_urlsafe(16)
    cursor.execute(
        "INSERT INTO login_sessions (id, user_id, kind, user_agent, ip, created_at,"
        " last_seen_at, expires_at, refresh_jti) VALUES (%s, %s, 'api', %s, %s, %s, %s, %s, %s)",
        (
            sid,
            user[0],
            request.user_agent.string[:300],
            request.remote_addr,
            now,
            now,
            now + SESSION_TTL,
            refresh_jti,
        ),
    )
    cursor.execute("UPDATE users SET last_login_at = %s WHERE id = %s", (now, user[0]))
    connection.commit()
    sub = user[1].replace("-", "")
    access = mint(sub, sid, "access", ACCESS_TTL)
    refresh = mint(sub, sid, "refresh", int(SESSION_TTL.total_seconds()), refresh_jti)
    return jsonify({"token": access, "access_token": access, "refresh_token": refresh})


def mint(sub: str, sid: str, typ: str, ttl: int, jti: str | None = None) -> str:
    now = int(time.time())
    payload = {
        "sub": sub,
        "sid": sid,
        "jti": jti or secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + ttl,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "typ": typ,
    }
    return jwt.encode(payload, SECRET, algorithm="HS256", headers={"typ": "JWT"})


@app.get("/auth/status")
@token_required
def auth_status() -> Any:
    _, entity_id, email, username, admin, created_at, _ = g.user
    data = {
        "user_id": entity_id.replace("-", ""),
        "email": email,
        "username": username,
        "admin": admin,
        "registered_on": created_at.isoformat(),
    }
    return jsonify({"status": "success", "data": data})


@app.post("/generate_array")
@token_required
def generate_array() -> Any:
    data = request.get_json(silent=True) or {}
    sentence = data.get("sentence")
    if not isinstance(sentence, str) or not sentence:
        return jsonify({"message": "sentence is required"}), 400
    seed = int.from_bytes(hashlib.sha256(sentence.encode()).digest(), "big")
    generator = random.Random(seed)
    return jsonify([generator.random() for _ in range(DIMENSIONS)])

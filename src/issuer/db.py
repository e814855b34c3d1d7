"""Database engine and session lifecycle: SQLite (aiosqlite) by default, PostgreSQL (asyncpg).

A use case that changes data runs in one ``Database.transaction()``; reads use
``Database.session()``. Sessions are never shared between tasks. Work that must happen only
once the transaction has committed (waking the outbox dispatcher, fanning a snapshot out in
this process) is registered with :func:`after_commit`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, make_transient_to_detached
from sqlalchemy.orm.base import manager_of_class as manager_of
from sqlalchemy.types import TypeDecorator

from issuer import sqlite

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
AFTER_COMMIT = "after_commit"
# A connection's statements commit on their own (asyncpg: a flag, set without a round trip).
AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
M = TypeVar("M")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``TIMESTAMP WITH TIME ZONE`` that always comes back timezone-aware in UTC.

    PostgreSQL returns aware values; SQLite stores the text and hands back naive ones, which
    would otherwise reach JSON without their offset.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def detached(cls: type[M], values: Mapping[Any, Any] | Iterable[tuple[str, Any]]) -> M:
    """An instance of model ``cls`` holding ``values`` (a Core row's mapping, or column name
    and value pairs), detached from any session: built through the mapper's class manager,
    because the constructor fires an attribute event per column, which costs more than the
    statement that read the row."""
    found: M = manager_of(cls).new_instance()
    found.__dict__.update(values)
    make_transient_to_detached(found)
    return found


def load_models() -> MetaData:
    """Import every feature's ``models`` module, so that all tables are on ``Base.metadata``
    (for Alembic and for tests) without a list to keep by hand."""
    import importlib
    import pkgutil

    import issuer

    for module in pkgutil.walk_packages(issuer.__path__, "issuer."):
        if module.name.endswith(".models"):
            importlib.import_module(module.name)
    return Base.metadata


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run ``callback`` once the transaction of ``session`` has committed (never on rollback)."""
    callbacks: list[Callable[[], None]] = session.info.setdefault(AFTER_COMMIT, [])
    if callback not in callbacks:
        callbacks.append(callback)


def make_engine(url: str, *, pool_size: int = 20, pool_timeout: float = 10.0) -> AsyncEngine:
    """Create the engine; SQLite gets WAL, a busy timeout so concurrent writers wait, and one
    trip to aiosqlite's thread per statement (``issuer.sqlite``)."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 15}, module=sqlite.dbapi())

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size // 2,
        pool_timeout=pool_timeout,
        # No ping on every checkout (a round trip per transaction: three per login). A
        # connection that died meanwhile fails its first statement; SQLAlchemy then
        # invalidates the pool's older connections and the request answers 503 with
        # Retry-After (issuer.web.errors; tests/test_database_outage.py).
        pool_pre_ping=False,
        connect_args={"command_timeout": 30},
    )


class WriterLock:
    """One writing transaction at a time in this process, for SQLite: it allows one writer,
    and a second one that finds the database locked waits in sqlite3's busy handler, which
    sleeps 1, 2, 5 … 100 ms between tries on a thread of the pool, however soon the first
    commits. Waiting here instead costs nothing and ends at that commit. A task that holds it
    may enter it again (a statement of its own inside its transaction)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            yield
            return
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None


class Database:
    """Owns the engine and the session factory for one app instance."""

    def __init__(self, url: str, *, pool_size: int = 20, pool_timeout: float = 10.0) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, pool_timeout=pool_timeout)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL runs units of one statement in autocommit (:meth:`statement`); SQLite
        # takes one writer at a time.
        self._autocommit = self.engine.dialect.name == "postgresql"
        self._writer = None if self._autocommit else WriterLock()

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def session(self) -> AsyncSession:
        """A session for reading, to use as ``async with db.session() as session`` (whatever it
        writes is rolled back at the end)."""
        return self._sessions()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed on success, rolled back on error; then the
        :func:`after_commit` callbacks run. On SQLite one at a time (:class:`WriterLock`)."""
        async with self._writing(), self._sessions() as session:
            async with session.begin():
                yield session
            callbacks = session.info.pop(AFTER_COMMIT, [])
        for callback in callbacks:
            callback()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads that need no snapshot of their own: on PostgreSQL each statement
        runs in autocommit (one round trip; under READ COMMITTED a transaction around a read
        gives it nothing more), on SQLite without the writer lock (WAL readers never wait for
        the writer). For the hot reads; :meth:`session` for the rest."""
        if not self._autocommit:
            async with self._sessions() as session:
                yield session
            return
        async with self._autocommitting() as session:
            yield session

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[AsyncSession]:
        """A session for a unit of work that PostgreSQL runs as one statement (a read, an
        ``UPDATE … RETURNING``, a data-modifying ``WITH``): there the statement commits on its
        own, without the ``BEGIN`` and ``COMMIT`` round trips around it (one round trip
        instead of three) — a statement is atomic by itself. On SQLite, where such a unit may
        take several statements, a transaction as :meth:`transaction`. Either way the
        :func:`after_commit` callbacks run after it."""
        if not self._autocommit:
            async with self.transaction() as session:
                yield session
            return
        async with self._autocommitting() as session:
            yield session
            callbacks = session.info.pop(AFTER_COMMIT, [])
        for callback in callbacks:
            callback()

    @asynccontextmanager
    async def _autocommitting(self) -> AsyncIterator[AsyncSession]:
        """A session whose connection runs each statement in autocommit (PostgreSQL)."""
        async with self._sessions() as session:
            await session.connection(execution_options=AUTOCOMMIT)
            yield session

    def _writing(self) -> AbstractAsyncContextManager[None]:
        return self._writer.held() if self._writer is not None else nullcontext()

    async def dispose(self) -> None:
        await self.engine.dispose()


def asyncpg_dsn(url: str) -> str:
    """Turn a SQLAlchemy ``postgresql+asyncpg://`` URL into a plain DSN for asyncpg."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# asyncpg's failures that mean "the server or the connection went away", not "bad query".
_CONNECTION_ERRORS = (
    asyncpg.PostgresConnectionError,  # CannotConnectNowError, ConnectionDoesNotExist…
    asyncpg.InterfaceError,  # the connection was closed under us
    asyncpg.OperatorInterventionError,  # AdminShutdownError, CrashShutdownError, query canceled
    asyncpg.InsufficientResourcesError,  # too many connections
    OSError,  # refused, reset, unreachable (ConnectionError is one)
    TimeoutError,
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is down, restarting, locked or overloaded (so the
    answer is 503 with ``Retry-After``), as opposed to a bug in a query."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (PoolTimeout, DisconnectionError, *_CONNECTION_ERRORS)):
            return True
        if isinstance(current, DBAPIError):
            if current.connection_invalidated:
                return True
            # SQLite's "database is locked" (a write burst outlasted the busy timeout), a file
            # that cannot be opened, a server that refused us.
            if isinstance(current, OperationalError):
                return True
            current = current.orig
            continue
        current = current.__cause__ or current.__context__
    return False

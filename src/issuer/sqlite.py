"""SQLite through aiosqlite with one trip to its thread per statement, not five.

aiosqlite runs each sqlite3 call in a thread of its own and hands every call over through a
queue and back through the event loop (``call_soon_threadsafe``): ~40 µs of CPU and two
context switches each. SQLAlchemy's adapter makes five such trips for one statement — create
the cursor, execute, fetch the rows, close the cursor, and a rollback when the connection goes
back to the pool even after a commit — so a flow of the portal made ~60 of them. Here a
statement is executed, its rows fetched and its cursor closed in one trip (what a statement
does in SQLite takes microseconds; the trips were the cost), and commit and rollback are
skipped when sqlite3 says no transaction is open (``Connection.in_transaction``, read on
the thread after each statement).

It reaches into aiosqlite the way SQLAlchemy's own adapter does to set the isolation level
(the connection's ``_tx`` queue and its ``_conn``) and subclasses SQLAlchemy's cursor, so
:func:`check_versions` refuses versions it was not tested with, as ``issuer.web.server`` does
for hypercorn.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

from issuer.lib.versions import require_tested

TESTED = {"aiosqlite": ("0.22.",), "sqlalchemy": ("2.1.",)}
T = TypeVar("T")
# What one trip brings back: description, rows (None without a result), rowcount, lastrowid,
# and whether sqlite3 has a transaction open afterwards.
Outcome = tuple[Any, list[Any] | None, int, int | None, bool]


def check_versions() -> None:
    """Refuse versions of the patched packages these adapters were not tested with."""
    require_tested(TESTED, "issuer/sqlite.py")


def _on_thread(connection: Any, function: Callable[[], T]) -> T:
    """Run ``function`` on ``connection``'s thread (one trip) and wait for it in the greenlet."""
    future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    connection._tx.put_nowait((future, function))
    return await_(future)


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose statements each cost one trip: the sqlite3 cursor lives only inside it."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        # Not super().__init__(): it opens an aiosqlite cursor (a trip) that is never needed.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        raw = self._connection

        def run() -> Outcome:
            cursor = raw._conn.cursor()
            try:
                cursor.execute(operation, () if parameters is None else parameters)
                rows = cursor.fetchall() if cursor.description else None
                return (
                    cursor.description, rows, cursor.rowcount, cursor.lastrowid,
                    raw._conn.in_transaction,
                )  # fmt: skip
            finally:
                cursor.close()

        self._finish(run)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        raw = self._connection

        def run() -> Outcome:
            cursor = raw._conn.cursor()
            try:
                cursor.executemany(operation, seq_of_parameters)
                return None, None, cursor.rowcount, cursor.lastrowid, raw._conn.in_transaction
            finally:
                cursor.close()

        self._finish(run)

    def _finish(self, run: Callable[[], Outcome]) -> None:
        adapted = self._adapt_connection
        try:
            description, rows, self._rowcount, self._lastrowid, open_ = _on_thread(
                self._connection, run
            )
        except Exception as error:
            adapted.in_transaction = True  # type: ignore[attr-defined]  # unknown: assume open
            adapted._handle_exception(error)
        self._description = description
        self._rows = deque(rows) if rows is not None else deque()
        adapted.in_transaction = open_  # type: ignore[attr-defined]

    def close(self) -> None:
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        """Nothing to close: the rows were fetched and the cursor closed on the thread."""

    def setinputsizes(self, *inputsizes: Any) -> None:
        """sqlite3 has no input sizes."""


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection with :class:`OneTripCursor`; commit and rollback
    make no trip when no transaction is open."""

    __slots__ = ("in_transaction",)
    _cursor_cls = OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        # Unknown until the first statement: assume open, so the first rollback is real.
        self.in_transaction = True

    def commit(self) -> None:
        if self.in_transaction:
            super().commit()
            self.in_transaction = False

    def rollback(self) -> None:
        if self.in_transaction:
            super().rollback()
            self.in_transaction = False


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DB-API module SQLAlchemy's aiosqlite dialect is given (``create_engine(module=)``)."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        connection = self.aiosqlite.connect(*arg, **kw)
        connection._thread.daemon = True  # as SQLAlchemy does: never hold the interpreter
        return OneTripConnection(self, await_(connection))


def dbapi() -> OneTripDbapi:
    """The module to pass as ``create_async_engine(url, module=dbapi())`` for SQLite."""
    check_versions()
    return OneTripDbapi(aiosqlite, sqlite3)

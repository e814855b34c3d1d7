"""principal change notifications (PostgreSQL)

Every worker keeps its callers' login sessions and users in memory
(``issuer.accounts.principals``); these triggers tell all of them, at commit, that a row changed:
``pg_notify('issuer_principals', 's:<login session id>')`` for a login session updated or
deleted, ``'u:<user id>'`` for a user. Written by the database, so no code path (nor a manual
``UPDATE`` by an operator) can forget to. A login session whose only change is ``last_seen_at``
(marked seen every minute), and a user whose only change is ``event_seq`` (the entity events'
counter, always read under a lock), say nothing. SQLite runs one worker and no cache: nothing.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 00:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTION = """
CREATE FUNCTION issuer_principal_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('issuer_principals', TG_ARGV[0] || ':' || OLD.id);
    RETURN NULL;
END
$$
"""
TRIGGERS = (
    """CREATE TRIGGER login_sessions_changed AFTER UPDATE ON login_sessions FOR EACH ROW
       WHEN ((to_jsonb(OLD) - 'last_seen_at') IS DISTINCT FROM (to_jsonb(NEW) - 'last_seen_at'))
       EXECUTE FUNCTION issuer_principal_changed('s')""",
    """CREATE TRIGGER login_sessions_deleted AFTER DELETE ON login_sessions FOR EACH ROW
       EXECUTE FUNCTION issuer_principal_changed('s')""",
    """CREATE TRIGGER users_changed AFTER UPDATE ON users FOR EACH ROW
       WHEN ((to_jsonb(OLD) - 'event_seq') IS DISTINCT FROM (to_jsonb(NEW) - 'event_seq'))
       EXECUTE FUNCTION issuer_principal_changed('u')""",
    """CREATE TRIGGER users_deleted AFTER DELETE ON users FOR EACH ROW
       EXECUTE FUNCTION issuer_principal_changed('u')""",
)
NAMES = (
    ("login_sessions_changed", "login_sessions"),
    ("login_sessions_deleted", "login_sessions"),
    ("users_changed", "users"),
    ("users_deleted", "users"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)
    for trigger in TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table in NAMES:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS issuer_principal_changed()")

"""Engine and session handling. Explicit transactions: `with db.transaction() as session:`.

Each service runs as its PostgreSQL role (shared.models.exposed.SERVICE_ROLES): a service's
Flask app names it for the requests it serves (:func:`request_role`), a worker for its whole
process (:meth:`Database.run_as`); the CLI and the migrations run as the login itself, which
owns the tables. The role is set on a pooled connection when it is checked out for a different
role than it last served, so one process serving several services (the local gateway) still
gives each request its own service's privileges.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql
from sqlalchemy import ClauseElement, Connection, Engine, Executable, Row, create_engine, event
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from shared.models.base import ALL_SCHEMAS

# Every schema, so hand-written SQL may name tables unqualified (the models qualify them).
SEARCH_PATH = ",".join((*ALL_SCHEMAS, "public"))
_ROLE_KEY = "rf_role"
# The role of the request being served, when a service's app set one (see request_role).
_request_role: ContextVar[str | None] = ContextVar("rf_request_role", default=None)


def request_role(role: str | None) -> None:
    """Run this thread's (context's) next connections as `role`; None: the process's role."""
    _request_role.set(role)


def _switch_role(dbapi_connection: Any, role: str | None) -> None:
    # Outside any transaction block, so a rollback later never undoes it.
    with dbapi_connection.cursor() as cursor:
        if role is None:
            cursor.execute("RESET ROLE")
        else:
            cursor.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
    if not dbapi_connection.autocommit:
        dbapi_connection.commit()


_PREPARED_KEY = "rf_prepared"
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class PreparedStatement:
    name: str
    prepare: str
    execute: str


@functools.cache
def _prepared(sql: str) -> PreparedStatement:
    """`sql` (psycopg2's `%(name)s` placeholders) as PREPARE and EXECUTE statements: each
    distinct name becomes `$n` in the order of first appearance; EXECUTE passes the named
    parameters in that order. Named by a digest of the SQL, so it is the same name in every
    process and connection."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    body = _PLACEHOLDER.sub(number, sql)
    name = "rf_" + hashlib.blake2b(sql.encode(), digest_size=8).hexdigest()
    arguments = ", ".join(f"%({param})s" for param in order)
    return PreparedStatement(
        name=name,
        prepare=f"PREPARE {name} AS {body}",
        execute=f"EXECUTE {name}({arguments})" if order else f"EXECUTE {name}",
    )


# The dialect every statement runs under (see normalise_database_url).
_DIALECT = PGDialect_psycopg2()


def driver_sql(statement: ClauseElement) -> str:
    """`statement` compiled once to psycopg2's SQL (`%(name)s` for each bindparam), for
    :meth:`Database.read_row_sql`. Compile at first use and keep the string: a hot request
    then builds, keys and compiles no statement at all."""
    return str(statement.compile(dialect=_DIALECT))


def normalise_database_url(url: str) -> str:
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


class Database:
    """One engine per process. Building it opens no connection; the first query does."""

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._read_engine: Engine | None = None
        self._sessionmaker: sessionmaker[Session] | None = None
        self.url: str | None = None
        # The role of every connection of this process that no request names (a worker's).
        self.role: str | None = None

    def run_as(self, role: str | None) -> None:
        self.role = role

    def current_role(self) -> str | None:
        return _request_role.get() or self.role

    def _install_role_switch(self, engine: Engine) -> None:
        @event.listens_for(engine, "connect")
        def _connected(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            record.info[_ROLE_KEY] = None
            # A new server connection has none of the previous one's prepared statements.
            record.info.pop(_PREPARED_KEY, None)

        @event.listens_for(engine, "checkout")
        def _checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
            wanted = self.current_role()
            if record.info.get(_ROLE_KEY) != wanted:
                try:
                    _switch_role(dbapi_connection, wanted)
                except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                    # A pooled connection the server closed (backends terminated, a restart):
                    # the pool discards it and checks out another, as its pre-ping would.
                    raise DisconnectionError(str(exc)) from exc
                record.info[_ROLE_KEY] = wanted

    def configure(self, url: str, **engine_options: Any) -> Database:
        if self._engine is not None and self.url == normalise_database_url(url):
            return self
        self.dispose()
        self.url = normalise_database_url(url)
        options: dict[str, Any] = {
            # A connection the server dropped (restart, failover, pg_terminate_backend) is
            # noticed at checkout and replaced, so the first request after an outage succeeds.
            "pool_pre_ping": True,
            # A server that does not answer fails the request in seconds (-> 503), never hangs
            # it; and a request waits at most this long for a pooled connection.
            "connect_args": {"connect_timeout": 5, "options": f"-c search_path={SEARCH_PATH}"},
            "pool_timeout": 10,
            "pool_size": 10,
            "max_overflow": 20,
            "future": True,
        }
        options.update(engine_options)
        self._engine = create_engine(self.url, **options)
        self._install_role_switch(self._engine)
        # The hot read path (see read_row): autocommit, so a statement is one round trip with
        # no BEGIN/ROLLBACK around it, and no pre-ping, which would be a second one. A
        # connection that died is noticed by the statement itself and retried once instead.
        # Nothing to reset when a connection goes back either: autocommit holds no transaction,
        # and the pool's ROLLBACK call on return was a tenth of the hot read's own CPU.
        read_options = {
            **options,
            "pool_pre_ping": False,
            "isolation_level": "AUTOCOMMIT",
            "pool_reset_on_return": None,
        }
        self._read_engine = create_engine(self.url, **read_options)
        self._install_role_switch(self._read_engine)
        self._sessionmaker = sessionmaker(bind=self._engine, expire_on_commit=False)
        return self

    def dedicated_engine(self, *, statement_timeout_ms: int = 5000) -> Engine:
        """An engine of one connection, apart from the pools, with the process's role and a
        statement timeout: for a beat that must never wait behind the pool's other users (a
        worker whose threads hold every pooled connection is still alive). The caller
        disposes of it."""
        if self.url is None:
            raise RuntimeError("database is not configured; call db.configure(url) first")
        engine = create_engine(
            self.url,
            pool_size=1,
            max_overflow=0,
            pool_pre_ping=True,
            pool_timeout=5,
            connect_args={
                "connect_timeout": 5,
                "options": f"-c search_path={SEARCH_PATH} "
                f"-c statement_timeout={int(statement_timeout_ms)}",
            },
            future=True,
        )
        self._install_role_switch(engine)
        return engine

    @property
    def configured(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("database is not configured; call db.configure(url) first")
        return self._engine

    def session(self) -> Session:
        if self._sessionmaker is None:
            raise RuntimeError("database is not configured; call db.configure(url) first")
        return self._sessionmaker()

    @contextmanager
    def transaction(self, isolation_level: str | None = None) -> Iterator[Session]:
        """One unit of work: commits when the block ends, rolls back if it raises."""
        with self.session() as session, session.begin():
            if isolation_level is not None:
                # Set on the transaction's connection before its first statement.
                session.connection(execution_options={"isolation_level": isolation_level})
            yield session

    def read_row(self, statement: Executable) -> Row[Any] | None:
        """The first row of one read-only statement, in one round trip to PostgreSQL, outside
        any transaction (each statement sees the latest committed data). For the hottest
        requests only; everything else uses :meth:`session` / :meth:`transaction`.

        A pooled connection the server closed (restart, failover) fails its statement and
        invalidates the pool; the statement then runs once more on a fresh connection."""
        return self._read(lambda conn: conn.execute(statement).first())

    def read_row_sql(self, sql: str, parameters: Mapping[str, Any]) -> Row[Any] | None:
        """:meth:`read_row` for SQL compiled once by :func:`driver_sql`: the driver gets the
        string and the parameters as they are (psycopg2 adapts uuid.UUID both ways)."""
        return self._read(lambda conn: conn.exec_driver_sql(sql, parameters).first())

    def read_values_sql(self, sql: str, parameters: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """:meth:`read_row_sql`'s first row as a plain tuple (columns in the statement's order),
        through the pooled driver connection itself: no SQLAlchemy Connection, cursor result
        or Row is built (they were a fifth of a cached preview's CPU). The pool's checkout is
        the same (the request's role is switched there; privileges are checked when a prepared
        statement executes). The statement is a server-side prepared statement of the
        connection, PREPAREd with its first EXECUTE in one round trip: PostgreSQL plans it once
        per connection instead of at every request (planning the preview's three-table read
        took four times its execution). Any driver error (a connection the
        server closed, a server that does not answer) sends the statement down
        :meth:`read_row_sql`'s path, which replaces dead connections, retries once and raises
        SQLAlchemy's errors (a 503 for an outage)."""
        if self._read_engine is None:
            raise RuntimeError("database is not configured; call db.configure(url) first")
        try:
            conn = self._read_engine.raw_connection()
        except psycopg2.Error:
            conn = None
        if conn is not None:
            try:
                statement = _prepared(sql)
                known: set[str] = conn.info.setdefault(_PREPARED_KEY, set())
                cursor = conn.cursor()
                try:
                    if statement.name in known:
                        cursor.execute(statement.execute, parameters)
                    else:
                        # PREPARE and the first EXECUTE in one round trip.
                        cursor.execute(f"{statement.prepare}; {statement.execute}", parameters)
                        known.add(statement.name)
                    values = cursor.fetchone()
                finally:
                    cursor.close()
                return None if values is None else tuple(values)
            except psycopg2.Error:
                # Never handed back to the pool in an unknown state: the slow path below opens
                # a fresh one if this was the server going away.
                conn.invalidate()
            finally:
                conn.close()
        row = self.read_row_sql(sql, parameters)
        return None if row is None else tuple(row)

    def _read(self, run: Callable[[Connection], Row[Any] | None]) -> Row[Any] | None:
        if self._read_engine is None:
            raise RuntimeError("database is not configured; call db.configure(url) first")
        try:
            with self._read_engine.connect() as conn:
                return run(conn)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with self._read_engine.connect() as conn:
            return run(conn)

    def ping(self) -> None:
        """One round trip to PostgreSQL (`/healthz`): on the autocommit engine, so neither a
        pre-ping nor a ROLLBACK goes with it. A connection the server closed is replaced and
        the ping sent once more, so the answer says whether the server answers now."""
        self._read(_select_one)

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()
        self._engine = None
        self._read_engine = None
        self._sessionmaker = None


def _select_one(conn: Connection) -> None:
    conn.exec_driver_sql("SELECT 1")


db = Database()

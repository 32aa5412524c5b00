"""Engine and session handling. Explicit transactions: `with db.transaction() as session:`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ClauseElement, Connection, Engine, Executable, Row, create_engine
from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

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
            "connect_args": {"connect_timeout": 5},
            "pool_timeout": 10,
            "pool_size": 10,
            "max_overflow": 20,
            "future": True,
        }
        options.update(engine_options)
        self._engine = create_engine(self.url, **options)
        # The hot read path (see read_row): autocommit, so a statement is one round trip with
        # no BEGIN/ROLLBACK around it, and no pre-ping, which would be a second one. A
        # connection that died is noticed by the statement itself and retried once instead.
        read_options = {**options, "pool_pre_ping": False, "isolation_level": "AUTOCOMMIT"}
        self._read_engine = create_engine(self.url, **read_options)
        self._sessionmaker = sessionmaker(bind=self._engine, expire_on_commit=False)
        return self

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

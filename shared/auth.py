"""Bearer tokens (JWT, HS256) and password hashing; the request's authenticated principal."""

from __future__ import annotations

import functools
import math
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request
from prometheus_client import Counter
from sqlalchemy import ColumnElement, Row, Select, bindparam, select
from sqlalchemy.orm import Session

from shared.errors import DomainError, Unauthenticated
from shared.models import Account, User
from shared.principal import Principal

TOKEN_ISSUER = "resolutionflow"

# OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane. The library's default (64 MiB, 4
# lanes) let 16 concurrent wrong passwords take a gateway from 318 MiB past 1.3 GB; hashes made
# with other parameters are upgraded at the next successful login (`needs_rehash`).
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM
)

PASSWORD_HASHES = Counter(
    "rf_password_hashes_total", "Argon2 hashes computed (hash or verify)", ["op"]
)

F = TypeVar("F", bound=Callable[..., Any])


class HashingBusy(DomainError):
    """429: every hash slot of this process stayed busy for the whole wait."""

    status_code = 429

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("too many logins in progress; try again shortly")
        self.retry_after = retry_after


class _HashSlots:
    """At most `size` Argon2 computations at once in this process: each holds its memory cost
    for the whole computation, so the slots bound the memory logins can take."""

    def __init__(self, size: int = 2, wait_s: float = 10.0) -> None:
        self.configure(size, wait_s)

    def configure(self, size: int, wait_s: float) -> None:
        if size < 1:
            raise ValueError("LOGIN_HASH_CONCURRENCY must be at least 1")
        self.size = size
        self.wait_s = wait_s
        self._semaphore = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._local = threading.local()
        self.in_flight = 0
        self.peak = 0

    def __enter__(self) -> None:
        semaphore = self._semaphore
        if not semaphore.acquire(timeout=self.wait_s):
            raise HashingBusy(max(1, math.ceil(self.wait_s)))
        self._local.held = semaphore  # released even if configure() swaps the semaphore
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.in_flight -= 1
        self._local.held.release()


HASH_SLOTS = _HashSlots()


def configure_hashing(*, concurrency: int, wait_s: float) -> None:
    """Size this process's hash slots (each app factory calls it with the settings)."""
    HASH_SLOTS.configure(concurrency, wait_s)


@functools.cache
def _dummy_hash() -> str:
    # Verified when the e-mail is unknown or has no password, so that such a login costs the
    # same one hash as a known account's.
    return _hasher.hash(secrets.token_urlsafe(24))


def hash_password(password: str) -> str:
    with HASH_SLOTS:
        PASSWORD_HASHES.labels(op="hash").inc()
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches. Always costs one hash, also for a missing hash."""
    target = password_hash or _dummy_hash()
    with HASH_SLOTS:
        PASSWORD_HASHES.labels(op="verify").inc()
        try:
            matched = _hasher.verify(target, password)
        except (VerificationError, InvalidHashError):
            return False
    return bool(matched and password_hash)


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


def issue_token(secret: str, user_id: uuid.UUID, ttl_s: int) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": str(user_id),
        "iss": TOKEN_ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


class InvalidToken(Exception):
    pass


# Tokens already verified, with their user id and expiry: every API request carries one, and
# verifying it (PyJWT: base64, JSON, HMAC, the claims) was a tenth of a cached preview's CPU.
# A token's claims cannot change, so only its expiry is checked again, at each use. Keyed by
# secret and token, so a rotated SECRET_KEY verifies afresh; emptied when it grows past the
# bound (every live token is verified once more, then cached again).
_verified_tokens: dict[tuple[str, str], tuple[uuid.UUID, float]] = {}
VERIFIED_TOKENS_MAX = 4096


def decode_token(secret: str, token: str) -> uuid.UUID:
    cached = _verified_tokens.get((secret, token))
    if cached is not None:
        user_id, expires_at = cached
        if time.time() < expires_at:
            return user_id
        _verified_tokens.pop((secret, token), None)
    user_id, expires_at = _verify_token(secret, token)
    if len(_verified_tokens) >= VERIFIED_TOKENS_MAX:
        _verified_tokens.clear()
    _verified_tokens[(secret, token)] = (user_id, expires_at)
    return user_id


def _verify_token(secret: str, token: str) -> tuple[uuid.UUID, float]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=TOKEN_ISSUER,
            options={"require": ["exp", "sub", "iss"]},
        )
        return uuid.UUID(str(claims["sub"])), float(claims["exp"])
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidToken(str(exc)) from exc


def load_principal(session: Session, user_id: uuid.UUID) -> Principal | None:
    row = session.execute(
        select(User)
        .join(Account, Account.id == User.account_id)
        .where(User.id == user_id, User.is_active.is_(True), Account.is_active.is_(True))
    ).scalar_one_or_none()
    return Principal.from_user(row) if row is not None else None


def principal_select(user_id: uuid.UUID | ColumnElement[Any]) -> Select[Any]:
    """Core SELECT of the principal's columns: the user, if it and its account are active.
    Read on every request (no cache), so a disabled user or a changed role takes effect at
    the next request. Other columns may be added to it (see the notes preview). `user_id` is
    a value, or a bindparam for a statement compiled once (see principal_sql)."""
    users, accounts = User.__table__, Account.__table__
    return (
        select(
            users.c.id,
            users.c.account_id,
            users.c.team_id,
            users.c.account_role,
            users.c.is_super_admin,
            users.c.email,
        )
        .select_from(users)
        .join(accounts, accounts.c.id == users.c.account_id)
        .where(users.c.id == user_id, users.c.is_active.is_(True), accounts.c.is_active.is_(True))
    )


def principal_from_row(row: Row[Any]) -> Principal:
    return Principal.from_user(row)


# principal_select's columns, in its order: a statement that adds columns adds them after these.
PRINCIPAL_COLUMNS = 6


def principal_from_values(values: tuple[Any, ...]) -> Principal:
    """principal_from_row for a plain tuple of principal_select's columns (Database.
    read_values_sql), in principal_select's order."""
    user_id, account_id, team_id, role, is_super_admin, email = values[:PRINCIPAL_COLUMNS]
    return Principal(
        id=user_id,
        account_id=account_id,
        team_id=team_id,
        role=role,
        is_super_admin=is_super_admin,
        email=email,
    )


@functools.cache
def principal_sql() -> str:
    """principal_select compiled once, with `%(user_id)s` for the user's id."""
    from shared.db import driver_sql

    return driver_sql(principal_select(bindparam("user_id")))


def user_id_from_authorization(secret: str, header: str) -> uuid.UUID:
    """The user id of a valid `Authorization: Bearer <token>` header value (nothing is read
    from the database); Unauthenticated for a missing, malformed, invalid or expired one."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token")
    try:
        return decode_token(secret, token.strip())
    except InvalidToken as exc:
        raise Unauthenticated("invalid or expired token") from exc


def bearer_user_id() -> uuid.UUID:
    """The user id of the request's valid bearer token (nothing is read from the database)."""
    return user_id_from_authorization(
        current_app.config["SETTINGS"].secret_key, request.headers.get("Authorization", "")
    )


def authenticate_request() -> Principal:
    from shared.db import db

    # One statement, one round trip, no ORM object, compiled once: this runs on every API
    # request.
    values = db.read_values_sql(principal_sql(), {"user_id": bearer_user_id()})
    if values is None:
        raise Unauthenticated("user is inactive or unknown")
    return principal_from_values(values)


def auth_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.principal = authenticate_request()
        return view(*args, **kwargs)

    return cast(F, wrapper)


def current_principal() -> Principal:
    principal = getattr(g, "principal", None)
    if principal is None:
        raise RuntimeError("current_principal() outside an @auth_required view")
    return cast(Principal, principal)

"""Bearer tokens (JWT, HS256) and password hashing; the request's authenticated principal."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any, TypeVar, cast

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request
from sqlalchemy import Row, Select, select
from sqlalchemy.orm import Session

from shared.errors import Unauthenticated
from shared.models import Account, User
from shared.principal import Principal

TOKEN_ISSUER = "resolutionflow"
_hasher = PasswordHasher()

F = TypeVar("F", bound=Callable[..., Any])


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


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


def decode_token(secret: str, token: str) -> uuid.UUID:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=TOKEN_ISSUER,
            options={"require": ["exp", "sub", "iss"]},
        )
        return uuid.UUID(str(claims["sub"]))
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidToken(str(exc)) from exc


def load_principal(session: Session, user_id: uuid.UUID) -> Principal | None:
    row = session.execute(
        select(User)
        .join(Account, Account.id == User.account_id)
        .where(User.id == user_id, User.is_active.is_(True), Account.is_active.is_(True))
    ).scalar_one_or_none()
    return Principal.from_user(row) if row is not None else None


def principal_select(user_id: uuid.UUID) -> Select[Any]:
    """Core SELECT of the principal's columns: the user, if it and its account are active.
    Read on every request (no cache), so a disabled user or a changed role takes effect at
    the next request. Other columns may be added to it (see the notes preview)."""
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
    return Principal(
        id=row.id,
        account_id=row.account_id,
        team_id=row.team_id,
        role=row.account_role,
        is_super_admin=row.is_super_admin,
        email=row.email,
    )


def bearer_user_id() -> uuid.UUID:
    """The user id of the request's valid bearer token (nothing is read from the database)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token")
    try:
        return decode_token(current_app.config["SETTINGS"].secret_key, token.strip())
    except InvalidToken as exc:
        raise Unauthenticated("invalid or expired token") from exc


def authenticate_request() -> Principal:
    from shared.db import db

    # One statement, one round trip, no ORM object: this runs on every API request.
    row = db.read_row(principal_select(bearer_user_id()))
    if row is None:
        raise Unauthenticated("user is inactive or unknown")
    return principal_from_row(row)


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

"""Password login that is neither a denial-of-service lever nor a brute-force target.

What a review reproduced, and what answers it here:

* each wrong password cost an Argon2 hash of 64 MiB with no limit (16 concurrent bad logins
  took a gateway past its pod limit): the hash is sized to OWASP's minimum for Argon2id
  (19 MiB, t=2, p=1; older hashes are re-hashed at the next successful login), and at most
  ``LOGIN_HASH_CONCURRENCY`` hashes run at once per process (:data:`shared.auth` holds the
  semaphore); a login that cannot get a slot in time answers 429 rather than queueing memory;
* unlimited guesses: attempts are rate-limited in Redis per client IP and per account (the
  `limits` package, moving windows), and ``LOGIN_LOCKOUT_FAILURES`` failures in a row lock the
  account for ``LOGIN_LOCKOUT_S`` (the right password then gets 429 too). Refusals are
  :class:`LoginThrottled` (429 with ``Retry-After``) and are decided before any hash is
  computed, so a throttled caller costs nothing;
* an unknown e-mail answered ~40 times faster than a known one: it now verifies the password
  against a dummy hash with the same parameters, so both cost one hash.

Redis keys carry a SHA-256 of the lower-cased e-mail, never the address itself.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
from limits import RateLimitItem, parse
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from shared import auth
from shared.errors import DomainError
from shared.models import User


class LoginThrottled(DomainError):
    """429: too many attempts from this address or for this account, or the account is
    locked for a while. ``retry_after`` is whole seconds."""

    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))


@dataclass(frozen=True)
class LoginPolicy:
    per_ip: str = "30/minute"
    per_account: str = "10/minute"
    lockout_failures: int = 10
    lockout_s: int = 900
    key_prefix: str = "rf"


class LoginGuard:
    """The Redis side of login: rate limits and lockouts. One per app (it holds a pool)."""

    def __init__(self, redis_url: str, policy: LoginPolicy) -> None:
        self.policy = policy
        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
        self._storage = RedisStorage(
            redis_url, key_prefix=f"{policy.key_prefix}:login-limit", socket_connect_timeout=2
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._per_ip: RateLimitItem = parse(policy.per_ip)
        self._per_account: RateLimitItem = parse(policy.per_account)

    @staticmethod
    def account_key(email: str) -> str:
        return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:32]

    def _failures_key(self, account: str) -> str:
        return f"{self.policy.key_prefix}:login-failures:{account}"

    def _lock_key(self, account: str) -> str:
        return f"{self.policy.key_prefix}:login-locked:{account}"

    def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        stats = self._limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def admit(self, *, ip: str, email: str) -> str:
        """Count this attempt; raise :class:`LoginThrottled` if it must not be tried. Returns
        the account key for :meth:`failed` / :meth:`succeeded`."""
        account = self.account_key(email)
        locked_for = int(self._redis.ttl(self._lock_key(account)))
        if locked_for > 0:
            raise LoginThrottled(
                "this account is locked after repeated failed logins; try again later",
                locked_for,
            )
        if not self._limiter.hit(self._per_ip, "ip", ip):
            raise LoginThrottled(
                "too many login attempts from this address",
                self._retry_after(self._per_ip, "ip", ip),
            )
        if not self._limiter.hit(self._per_account, "account", account):
            raise LoginThrottled(
                "too many login attempts for this account",
                self._retry_after(self._per_account, "account", account),
            )
        return account

    def failed(self, account: str) -> None:
        """One more failure in a row; lock the account once there are enough."""
        key = self._failures_key(account)
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, self.policy.lockout_s)
        count = int(pipe.execute()[0])
        if count >= self.policy.lockout_failures:
            pipe = self._redis.pipeline()
            pipe.set(self._lock_key(account), 1, ex=self.policy.lockout_s)
            pipe.delete(key)
            pipe.execute()

    def succeeded(self, account: str) -> None:
        self._redis.delete(self._failures_key(account))


def authenticate(
    session: Session, guard: LoginGuard, *, email: str, password: str, ip: str
) -> uuid.UUID | None:
    """The user id for this e-mail and password, or None. Raises :class:`LoginThrottled`
    before hashing anything when the attempt is over a limit, and
    :class:`shared.auth.HashingBusy` when no hash slot frees up in time.

    Exactly one password verification runs per admitted attempt, whether or not the e-mail
    exists (timing tells nothing); a stale hash is upgraded on success, in this transaction.
    """
    account = guard.admit(ip=ip, email=email)
    row: Any = session.execute(
        select(User.id, User.password_hash, User.is_active).where(
            func.lower(User.email) == email.strip().lower()
        )
    ).one_or_none()
    stored = row.password_hash if row is not None else None
    ok = auth.verify_password(stored, password)
    if not ok or row is None or not row.is_active:
        guard.failed(account)
        return None
    guard.succeeded(account)
    if stored is not None and auth.needs_rehash(stored):
        session.execute(
            update(User)
            .where(User.id == row.id, User.password_hash == stored)
            .values(password_hash=auth.hash_password(password))
        )
    return uuid.UUID(str(row.id))

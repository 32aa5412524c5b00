"""POST /api/v1/auth/token under attack: brute force, credential stuffing from one address,
memory exhaustion through concurrent wrong passwords, and e-mail enumeration by timing.

What was reproduced: 25 wrong passwords in a row were all answered 401 and the right one then
200; 16 concurrent bad logins took a gateway from 318 MiB to 1.34 GB (64 MiB per hash, no
bound); an unknown e-mail answered about 40 times faster than a known one (no hash at all)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from prometheus_client import REGISTRY
from sqlalchemy import update

from shared import auth
from shared.db import db
from shared.models import User
from tests.support.servers import settings_with

URL = "/api/v1/auth/token"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def login_app(migrated: Any) -> Iterator[Any]:
    """A scripts app with the given login policy; restores the process's hash slots after."""
    from services.scripts import create_app

    made: list[Any] = []

    def make(**overrides: Any) -> Any:
        app = create_app(settings_with(migrated, **overrides))
        app.config["TESTING"] = True
        made.append(app)
        return app.test_client()

    yield make
    auth.configure_hashing(
        concurrency=migrated.LOGIN_HASH_CONCURRENCY, wait_s=migrated.LOGIN_HASH_WAIT_S
    )


def _login(client: Any, email: str, password: str, ip: str = "198.51.100.7") -> Any:
    return client.post(
        URL, json={"email": email, "password": password}, environ_base={"REMOTE_ADDR": ip}
    )


def _verifies() -> float:
    return REGISTRY.get_sample_value("rf_password_hashes_total", {"op": "verify"}) or 0.0


def test_brute_force_locks_the_account_even_for_the_right_password(
    login_app: Any, make_user: Any
) -> None:
    client = login_app(LOGIN_LOCKOUT_FAILURES=5, LOGIN_LOCKOUT_S=600)
    victim = make_user("owner", password=PASSWORD)
    bystander = make_user("owner", password=PASSWORD)
    for _ in range(5):
        assert _login(client, victim.email, "guess").status_code == 401
    locked = _login(client, victim.email, PASSWORD)
    assert locked.status_code == 429, locked.get_json()
    assert 0 < int(locked.headers["Retry-After"]) <= 600
    assert "locked" in locked.get_json()["message"]
    before = _verifies()
    assert _login(client, victim.email, "another guess").status_code == 429
    assert _verifies() == before  # a locked account costs no hash
    # Only that account is locked; e-mails differ only in case are the same account.
    assert _login(client, bystander.email, PASSWORD).status_code == 200
    assert _login(client, victim.email.upper(), PASSWORD).status_code == 429


def test_failures_in_a_row_reset_on_success(login_app: Any, make_user: Any) -> None:
    client = login_app(LOGIN_LOCKOUT_FAILURES=3)
    user = make_user("engineer", password=PASSWORD)
    for _ in range(2):
        assert _login(client, user.email, "guess").status_code == 401
    assert _login(client, user.email, PASSWORD).status_code == 200
    for _ in range(2):
        assert _login(client, user.email, "guess").status_code == 401
    assert _login(client, user.email, PASSWORD).status_code == 200


def test_rate_limit_per_account_answers_429_with_retry_after(
    login_app: Any, make_user: Any
) -> None:
    client = login_app(LOGIN_RATE_PER_ACCOUNT="3/minute", LOGIN_LOCKOUT_FAILURES=100)
    user = make_user("engineer", password=PASSWORD)
    # Spread over addresses: the per-account limit holds whatever the source.
    for n in range(3):
        assert _login(client, user.email, "guess", ip=f"198.51.100.{n + 1}").status_code == 401
    limited = _login(client, user.email, PASSWORD, ip="198.51.100.99")
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.get_json()["code"] == 429


def test_rate_limit_per_ip_stops_credential_stuffing(login_app: Any, make_user: Any) -> None:
    client = login_app(LOGIN_RATE_PER_IP="4/minute")
    users = [make_user("engineer", password=PASSWORD) for _ in range(5)]
    for user in users[:4]:
        assert _login(client, user.email, "guess", ip="203.0.113.5").status_code == 401
    stuffed = _login(client, users[4].email, PASSWORD, ip="203.0.113.5")
    assert stuffed.status_code == 429 and int(stuffed.headers["Retry-After"]) > 0
    assert _login(client, users[4].email, PASSWORD, ip="203.0.113.6").status_code == 200


def test_unknown_email_costs_one_hash_like_a_known_one(login_app: Any, make_user: Any) -> None:
    client = login_app()
    known = make_user("engineer", password=PASSWORD)
    no_password = make_user("engineer")
    for email in (known.email, "nobody-at-all@example.test", no_password.email):
        before = _verifies()
        response = _login(client, email, "wrong password")
        assert response.status_code == 401
        assert response.get_json()["message"] == "invalid email or password"
        assert _verifies() - before == 1, email  # one Argon2 verification each: same cost


def test_password_hashes_use_owasp_minimum_and_upgrade_on_login(
    login_app: Any, make_user: Any
) -> None:
    client = login_app()
    user = make_user("engineer", password=PASSWORD)
    # A hash made with the library's old default (64 MiB, 4 lanes).
    old = PasswordHasher().hash(PASSWORD)
    assert "m=65536" in old
    with db.transaction() as session:
        session.execute(update(User).where(User.id == user.id).values(password_hash=old))
    assert _login(client, user.email, PASSWORD).status_code == 200
    with db.session() as session:
        stored = session.get(User, user.id).password_hash  # type: ignore[union-attr]
    assert stored is not None and "$m=19456,t=2,p=1$" in stored
    assert _login(client, user.email, PASSWORD).status_code == 200


def test_concurrent_wrong_passwords_hash_within_the_slots(login_app: Any, make_user: Any) -> None:
    login_app(LOGIN_HASH_CONCURRENCY=2, LOGIN_HASH_WAIT_S=60.0)
    stored = auth.hash_password(PASSWORD)
    auth.HASH_SLOTS.peak = 0
    start = threading.Barrier(16)
    results: list[bool] = []

    def attempt() -> None:
        start.wait()
        results.append(auth.verify_password(stored, "wrong"))

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [False] * 16
    # 16 at once, never more than 2 hashes (2 x 19 MiB) in memory together.
    assert 1 <= auth.HASH_SLOTS.peak <= 2


def test_login_answers_429_when_every_hash_slot_stays_busy(login_app: Any, make_user: Any) -> None:
    client = login_app(LOGIN_HASH_CONCURRENCY=1, LOGIN_HASH_WAIT_S=0.05)
    user = make_user("engineer", password=PASSWORD)
    with auth.HASH_SLOTS:  # another login holds the only slot
        busy = _login(client, user.email, PASSWORD)
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
    assert _login(client, user.email, PASSWORD).status_code == 200


def test_spoofed_forwarded_for_does_not_escape_the_ip_limit(login_app: Any, make_user: Any) -> None:
    direct = login_app(LOGIN_RATE_PER_IP="2/minute")  # no trusted proxy: X-Forwarded-For ignored
    user = make_user("engineer", password=PASSWORD)
    statuses = [
        direct.post(
            URL,
            json={"email": user.email, "password": "guess"},
            headers={"X-Forwarded-For": f"192.0.2.{n}"},
            environ_base={"REMOTE_ADDR": "198.51.100.50"},
        ).status_code
        for n in range(3)
    ]
    assert statuses == [401, 401, 429]

    # Behind the deploy's one proxy, the address it appended is the client's.
    proxied = login_app(LOGIN_RATE_PER_IP="2/minute", TRUSTED_PROXY_HOPS=1)
    other = make_user("engineer", password=PASSWORD)
    for client_ip, expected in (("192.0.2.9", 200), ("192.0.2.9", 200), ("192.0.2.9", 429)):
        got = proxied.post(
            URL,
            json={"email": other.email, "password": PASSWORD},
            headers={"X-Forwarded-For": f"10.9.9.9, {client_ip}"},
            environ_base={"REMOTE_ADDR": "10.0.0.2"},
        )
        assert got.status_code == expected

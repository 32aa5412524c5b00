"""The admin CLI exactly as ops and the issue write it: one JSON object on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from shared.config import PROJECT_ROOT


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=PROJECT_ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    stream = result.stdout if result.returncode == 0 else result.stderr
    lines = [line for line in stream.splitlines() if line.strip().startswith("{")]
    assert lines, (result.stdout, result.stderr)
    return result.returncode, json.loads(lines[-1])


def test_account_user_token_and_login_flow(migrated: Any, client: Any) -> None:
    code, account = cli("create-account", "--name", "Acme IT")
    assert code == 0 and set(account) >= {"id"}
    code, user = cli(
        "create-user",
        "--account",
        account["id"],
        "--email",
        "Lead@Acme.test",
        "--role",
        "owner",
        "--team",
        "Field",
        "--password",
        "s3cret-pass",
    )
    assert code == 0 and set(user) == {"id", "token"}
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {user['token']}"}).json
    assert me["role"] == "owner" and me["team_id"] is not None

    code, issued = cli("token", "--email", "lead@acme.test", "--ttl", "60")
    assert code == 0
    assert (
        client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {issued['token']}"}
        ).status_code
        == 200
    )

    login = client.post(
        "/api/v1/auth/token", json={"email": "lead@acme.test", "password": "s3cret-pass"}
    )
    assert login.status_code == 200
    assert login.json["token_type"] == "bearer" and login.json["expires_in"] > 0
    wrong = client.post("/api/v1/auth/token", json={"email": "lead@acme.test", "password": "nope"})
    assert wrong.status_code == 401


def test_second_team_member_joins_the_existing_team(migrated: Any) -> None:
    _, account = cli("create-account", "--name", "Team Co")
    _, a = cli(
        "create-user",
        "--account",
        account["id"],
        "--email",
        "a@team.test",
        "--role",
        "engineer",
        "--team",
        "Ops",
    )
    _, b = cli(
        "create-user",
        "--account",
        account["id"],
        "--email",
        "b@team.test",
        "--role",
        "viewer",
        "--team",
        "Ops",
    )
    from shared.db import db
    from shared.models import User

    with db.session() as session:
        assert session.get(User, a["id"]).team_id == session.get(User, b["id"]).team_id  # type: ignore[union-attr]


def test_errors_are_json_on_stderr_with_nonzero_exit(migrated: Any) -> None:
    code, error = cli(
        "create-user", "--account", "not-a-uuid", "--email", "x@y.test", "--role", "owner"
    )
    assert code == 2 and "account" in error["error"]
    code, error = cli("token", "--email", "nobody@nowhere.test")
    assert code == 2 and "nobody" in error["error"]


def test_load_library_is_idempotent(migrated: Any) -> None:
    code, first = cli("load-library")
    assert code == 0 and first["templates_created"] >= 30 and first["categories_created"] >= 8
    code, second = cli("load-library")
    assert code == 0
    assert second["templates_created"] == 0 and second["templates_updated"] == 0


def test_inactive_users_are_rejected(migrated: Any, client: Any, make_user: Any) -> None:
    user = make_user("engineer")
    assert client.get("/api/v1/auth/me", headers=user.headers).status_code == 200
    from shared.db import db
    from shared.models import User

    with db.transaction() as session:
        row = session.get(User, user.id)
        assert row is not None
        row.is_active = False
    response = client.get("/api/v1/auth/me", headers=user.headers)
    assert response.status_code == 401 and response.is_json


def test_expired_token_is_401(migrated: Any, client: Any, make_user: Any) -> None:
    from shared.auth import issue_token

    user = make_user("engineer")
    expired = issue_token(migrated.secret_key, user.id, -10)
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {expired}"}).status_code
        == 401
    )
    forged = issue_token("another-secret-key-0123456789abcdef0123", user.id, 60)
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )

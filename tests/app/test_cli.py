"""The admin CLI exactly as ops and the issue write it: one JSON object on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from shared.config import PROJECT_ROOT


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
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
        "s3cret-pass-phrase",
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
        "/api/v1/auth/token", json={"email": "lead@acme.test", "password": "s3cret-pass-phrase"}
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


def cli_raw(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=PROJECT_ROOT,
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        input=stdin,
    )


def assert_json_error(result: Any, *words: str) -> dict[str, Any]:
    """Exit 2, nothing on stdout, exactly one JSON object on stderr naming `words`."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    error: dict[str, Any] = json.loads(lines[0])
    assert set(error) == {"error"}
    for word in words:
        assert word in error["error"], error
    return error


def test_every_cli_error_is_one_json_object_on_stderr_exit_2(migrated: Any) -> None:
    _, account = cli("create-account", "--name", "Errors Inc")
    # argparse's own errors: an unknown choice, a missing option, an unknown command
    bad_role = cli_raw(
        "create-user", "--account", account["id"], "--email", "a@e.test", "--role", "admin"
    )
    assert_json_error(bad_role, "--role", "admin")
    assert_json_error(cli_raw("token"), "--email")
    assert_json_error(cli_raw("no-such-command"), "no-such-command")
    assert_json_error(cli_raw("token", "--email", "a@e.test", "--ttl", "soon"), "--ttl")
    # settings read from the environment
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    assert_json_error(cli_raw("list-users", env={**env, "RF_ENV": "production"}), "SECRET_KEY")
    assert_json_error(
        cli_raw("list-users", env={**os.environ, "GATEWAY_PORT": "eighty"}), "GATEWAY_PORT"
    )
    assert_json_error(
        cli_raw("list-users", env={**os.environ, "EMBEDDED_REDIS_PORT": "70000"}),
        "EMBEDDED_REDIS_PORT",
    )
    # --help still prints help and succeeds
    assert cli_raw("--help").returncode == 0


def test_token_ttl_must_be_positive(migrated: Any) -> None:
    _, account = cli("create-account", "--name", "TTL Co")
    cli("create-user", "--account", account["id"], "--email", "t@ttl.test", "--role", "viewer")
    for ttl in ("0", "-60"):
        assert_json_error(cli_raw("token", "--email", "t@ttl.test", "--ttl", ttl), "--ttl")
    assert cli("token", "--email", "t@ttl.test", "--ttl", "30")[0] == 0


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short-pw", "at least 12"),
        ("password1234", "common"),
        ("QazWsxEdcRfv", "common"),
        ("weak@policy.test", "e-mail"),
        ("x" * 300, "at most"),
    ],
)
def test_password_policy_on_every_password_setting_path(
    migrated: Any, password: str, why: str
) -> None:
    _, account = cli("create-account", "--name", "Policy Co")
    create = cli_raw(
        "create-user",
        "--account",
        account["id"],
        "--email",
        "weak@policy.test",
        "--role",
        "engineer",
        "--password",
        password,
    )
    error = assert_json_error(create, "--password", why)
    assert password not in error["error"]
    code, _ = cli(
        "create-user", "--account", account["id"], "--email", "weak@policy.test", "--role", "owner"
    )
    assert code == 0
    assert_json_error(
        cli_raw("set-password", "--email", "weak@policy.test", "--password", password), why
    )
    assert_json_error(cli_raw("set-password", "--email", "weak@policy.test", stdin=password), why)


def test_set_password_lets_a_user_created_without_one_sign_in(migrated: Any, client: Any) -> None:
    _, account = cli("create-account", "--name", "Later Co")
    cli("create-user", "--account", account["id"], "--email", "late@later.test", "--role", "owner")
    login = {"email": "late@later.test", "password": "a-long-enough-phrase"}
    assert client.post("/api/v1/auth/token", json=login).status_code == 401
    code, result = cli(
        "set-password", "--email", "LATE@later.test", "--password", login["password"]
    )
    assert code == 0 and result["password_set"] is True and login["password"] not in str(result)
    assert client.post("/api/v1/auth/token", json=login).status_code == 200
    # from standard input, so the password stays out of the process list
    stdin_pw = "another-long-phrase-here"
    done = cli_raw("set-password", "--email", "late@later.test", stdin=stdin_pw + "\n")
    assert done.returncode == 0, done.stderr
    assert client.post("/api/v1/auth/token", json=login).status_code == 401
    login["password"] = stdin_pw
    assert client.post("/api/v1/auth/token", json=login).status_code == 200
    assert_json_error(
        cli_raw("set-password", "--email", "ghost@later.test", stdin="x" * 20), "ghost"
    )


def test_list_disable_and_enable_users(migrated: Any, client: Any) -> None:
    _, account = cli("create-account", "--name", "Roster Co")
    _, other = cli("create-account", "--name", "Elsewhere")
    cli(
        "create-user",
        "--account",
        account["id"],
        "--email",
        "b@roster.test",
        "--role",
        "viewer",
        "--password",
        "roster-pass-phrase",
    )
    _, a = cli(
        "create-user", "--account", account["id"], "--email", "a@roster.test", "--role", "owner"
    )
    cli("create-user", "--account", other["id"], "--email", "z@else.test", "--role", "owner")
    code, listed = cli("list-users", "--account", account["id"])
    assert code == 0
    assert [u["email"] for u in listed["users"]] == ["a@roster.test", "b@roster.test"]
    first = listed["users"][0]
    assert first["role"] == "owner" and first["active"] is True and first["has_password"] is False
    assert listed["users"][1]["has_password"] is True
    assert "password_hash" not in json.dumps(listed)
    _, everyone = cli("list-users")
    assert {u["email"] for u in everyone["users"]} >= {"a@roster.test", "z@else.test"}

    headers = {"Authorization": f"Bearer {a['token']}"}
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    code, disabled = cli("disable-user", "--email", "a@roster.test")
    assert code == 0 and disabled["active"] is False
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401
    assert_json_error(cli_raw("token", "--email", "a@roster.test"), "a@roster.test")
    login = {"email": "b@roster.test", "password": "roster-pass-phrase"}
    cli("disable-user", "--email", "b@roster.test")
    assert client.post("/api/v1/auth/token", json=login).status_code == 401
    code, enabled = cli("enable-user", "--email", "a@roster.test")
    assert code == 0 and enabled["active"] is True
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    cli("enable-user", "--email", "b@roster.test")
    assert client.post("/api/v1/auth/token", json=login).status_code == 200
    assert_json_error(cli_raw("disable-user", "--email", "nobody@roster.test"), "nobody")


def test_a_verified_token_is_refused_once_it_expires(migrated: Any) -> None:
    """Verified tokens are remembered, but their expiry is checked at every use."""
    from shared.auth import InvalidToken, decode_token, issue_token
    from tests.support.workers import wait_until

    user_id = uuid.uuid4()
    token = issue_token(migrated.secret_key, user_id, 3)
    assert decode_token(migrated.secret_key, token) == user_id
    assert decode_token(migrated.secret_key, token) == user_id

    def refused() -> bool:
        try:
            decode_token(migrated.secret_key, token)
        except InvalidToken:
            return True
        return False

    wait_until(refused, timeout_s=30, interval_s=0.1, message="the token to expire")
    with pytest.raises(InvalidToken):
        decode_token("another-secret-key-0123456789abcdef0123", token)


def test_cli_set_ticketing_prints_the_secret(migrated: Any, make_account: Any) -> None:
    from tests.support.workers import child_env

    account_id = make_account()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "set-ticketing",
            "--account",
            str(account_id),
            "--url",
            "http://127.0.0.1:9/cli",
        ],
        cwd=PROJECT_ROOT,
        env=child_env(migrated),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    assert printed["secret"].startswith("whsec_")
    assert printed["url"] == "http://127.0.0.1:9/cli"

    from shared.db import db
    from shared.models import TicketingIntegration

    with db.session() as session:
        row = session.query(TicketingIntegration).filter_by(account_id=account_id).one()
        assert row.secret == printed["secret"]

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "set-ticketing",
            "--account",
            str(account_id),
            "--url",
            "gopher://x",
        ],
        cwd=PROJECT_ROOT,
        env=child_env(migrated),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0
    assert "url" in bad.stderr

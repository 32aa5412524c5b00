"""Ops CLI: `python -m app.cli COMMAND ...`. Every command prints one JSON object on stdout.

With DATABASE_URL / REDIS_URL unset it uses the same embedded servers as `make run`, starting
them on demand.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from shared import runtime
from shared.auth import hash_password, issue_token
from shared.config import PROJECT_ROOT, ConfigError, Settings
from shared.db import db
from shared.embedded import DataDirInUse
from shared.models import ACCOUNT_ROLES, Account, Team, User
from shared.passwords import WeakPassword, check_password


class CLIError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors become the CLI's one JSON error (exit 2), not usage text."""

    def error(self, message: str) -> Any:
        raise CLIError(f"{self.prog}: {message}")


def _checked_password(password: str, email: str) -> str:
    try:
        check_password(password, email=email)
    except WeakPassword as exc:
        raise CLIError(f"--password: {exc}") from exc
    return password


def migrate(settings: Settings, revision: str = "head") -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "shared" / "migrations"))
    assert settings.DATABASE_URL is not None
    config.attributes["database_url"] = settings.DATABASE_URL
    command.upgrade(config, revision)


def migrate_command(settings: Settings) -> dict[str, Any]:
    migrate(settings)
    return {"migrated": True}


def create_account(name: str) -> dict[str, Any]:
    if not name.strip():
        raise CLIError("--name must not be empty")
    with db.transaction() as session:
        account = Account(name=name.strip())
        session.add(account)
        session.flush()
        return {"id": str(account.id), "name": account.name}


def _team_for(session: Any, account_id: uuid.UUID, team_name: str | None) -> uuid.UUID | None:
    if not team_name:
        return None
    team: Team | None = session.execute(
        select(Team).where(Team.account_id == account_id, Team.name == team_name)
    ).scalar_one_or_none()
    if team is None:
        team = Team(account_id=account_id, name=team_name)
        session.add(team)
        session.flush()
    return team.id


def create_user(
    settings: Settings,
    *,
    account: str,
    email: str,
    role: str,
    team: str | None,
    super_admin: bool,
    password: str | None,
) -> dict[str, Any]:
    if role not in ACCOUNT_ROLES:
        raise CLIError(f"--role must be one of {', '.join(ACCOUNT_ROLES)}")
    try:
        account_id = uuid.UUID(account)
    except ValueError as exc:
        raise CLIError("--account must be an account id (UUID)") from exc
    if "@" not in email:
        raise CLIError("--email must be an email address")
    if password is not None:
        _checked_password(password, email)
    try:
        with db.transaction() as session:
            if session.get(Account, account_id) is None:
                raise CLIError(f"no account {account_id}")
            user = User(
                account_id=account_id,
                team_id=_team_for(session, account_id, team),
                email=email.strip(),
                account_role=role,
                is_super_admin=super_admin,
                password_hash=hash_password(password) if password else None,
            )
            session.add(user)
            session.flush()
            user_id = user.id
    except IntegrityError as exc:
        raise CLIError(f"a user with email {email} already exists") from exc
    return {
        "id": str(user_id),
        "token": issue_token(settings.secret_key, user_id, settings.TOKEN_TTL_S),
    }


def _user_by_email(session: Any, email: str) -> User:
    user: User | None = session.execute(
        select(User).where(func.lower(User.email) == email.strip().lower())
    ).scalar_one_or_none()
    if user is None:
        raise CLIError(f"no user {email}")
    return user


def token(settings: Settings, *, email: str, ttl: int | None) -> dict[str, Any]:
    if ttl is not None and ttl <= 0:
        raise CLIError("--ttl must be a positive number of seconds")
    with db.session() as session:
        user = session.execute(
            select(User).where(func.lower(User.email) == email.strip().lower())
        ).scalar_one_or_none()
    if user is None or not user.is_active:
        raise CLIError(f"no active user {email}")
    return {"token": issue_token(settings.secret_key, user.id, ttl or settings.TOKEN_TTL_S)}


def set_password(*, email: str, password: str | None) -> dict[str, Any]:
    """Set (or reset) a user's password; without --password it is read from standard input."""
    if password is None:
        password = sys.stdin.readline().rstrip("\r\n")
    with db.transaction() as session:
        user = _user_by_email(session, email)
        user.password_hash = hash_password(_checked_password(password, user.email))
        return {"id": str(user.id), "email": user.email, "password_set": True}


def list_users(*, account: str | None) -> dict[str, Any]:
    query = select(User, Account.name, Team.name).join(Account, Account.id == User.account_id)
    query = query.outerjoin(Team, Team.id == User.team_id).order_by(
        Account.name, func.lower(User.email)
    )
    if account is not None:
        try:
            query = query.where(User.account_id == uuid.UUID(account))
        except ValueError as exc:
            raise CLIError("--account must be an account id (UUID)") from exc
    with db.session() as session:
        rows = session.execute(query).all()
    return {
        "users": [
            {
                "id": str(user.id),
                "email": user.email,
                "account_id": str(user.account_id),
                "account": account_name,
                "team": team_name,
                "role": user.account_role,
                "super_admin": user.is_super_admin,
                "active": user.is_active,
                "has_password": user.password_hash is not None,
            }
            for user, account_name, team_name in rows
        ]
    }


def set_active(*, email: str, active: bool) -> dict[str, Any]:
    """Disable (every token of the user stops working at once) or re-enable a user."""
    with db.transaction() as session:
        user = _user_by_email(session, email)
        user.is_active = active
        return {"id": str(user.id), "email": user.email, "active": active}


def load_library() -> dict[str, Any]:
    # The CLI fronts every service's ops commands; the library itself belongs to the scripts
    # service, so it is imported only when this command runs.
    from services.scripts.library import load_builtin_library

    with db.transaction() as session:
        return load_builtin_library(session)


def set_ticketing(
    settings: Settings, *, account: str, url: str, secret: str | None
) -> dict[str, Any]:
    from services.notes.integrations import IntegrationError, configure_ticketing

    try:
        account_id = uuid.UUID(account)
    except ValueError as exc:
        raise CLIError("--account must be an account id (UUID)") from exc
    try:
        with db.transaction() as session:
            result = configure_ticketing(
                session,
                account_id=account_id,
                url=url,
                secret=secret,
                allow_private=settings.ALLOW_PRIVATE_WEBHOOKS,
            )
    except IntegrationError as exc:
        raise CLIError(str(exc)) from exc
    return {"secret": result.secret, "url": result.url}


def rotate_integration_key() -> dict[str, Any]:
    """Re-encrypt every stored integration secret with the first INTEGRATION_KEY (run after
    putting a new key in front; the old one can go once this has run)."""
    from sqlalchemy import text

    from shared import secrets_at_rest

    box = secrets_at_rest.box()
    rotated = 0
    with db.transaction() as session:
        rows = session.execute(
            text("SELECT id, url, secret, credentials FROM ticketing_integrations FOR UPDATE")
        ).all()
        for row_id, url, secret, credentials in rows:
            session.execute(
                text(
                    "UPDATE ticketing_integrations SET url = :url, secret = :secret, "
                    "credentials = :credentials WHERE id = :id"
                ),
                {
                    "url": box.rotate(url),
                    "secret": box.rotate(secret),
                    # A native adapter's credentials (JSON), encrypted like the secret.
                    "credentials": box.rotate(credentials) if credentials else None,
                    "id": row_id,
                },
            )
            rotated += 1
    return {"rotated": rotated}


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CLIError(f"{name} must be a date (YYYY-MM-DD)") from exc


def usage(*, account: str, start: str | None, end: str | None) -> dict[str, Any]:
    """The account's LLM usage report (what ``GET /api/v1/usage`` answers), all time unless
    ``--from`` / ``--to`` narrow it."""
    from shared.usage import budget_status, usage_report

    try:
        account_id = uuid.UUID(account)
    except ValueError as exc:
        raise CLIError("--account must be an account id (UUID)") from exc
    first, last = _day(start, "--from"), _day(end, "--to")
    if first and last and last < first:
        raise CLIError("--to must not be before --from")
    with db.transaction() as session:
        if session.get(Account, account_id) is None:
            raise CLIError(f"no account {account_id}")
        report = usage_report(session, account_id=account_id, start=first, end=last)
        report["budget"] = budget_status(session, account_id).body()
    return {"account_id": str(account_id), **report}


def backfill_notes(settings: Settings, *, account: str, session: str | None) -> dict[str, Any]:
    """Queue note re-generations for the batch lane (the account's resolved sessions, or one
    session); beat submits them and stores the results."""
    from services.notes.batch import queue_backfill
    from services.notes.context import context_for
    from shared.llm import LLMUnavailable

    try:
        account_id = uuid.UUID(account)
        session_ids = [uuid.UUID(session)] if session else None
    except ValueError as exc:
        raise CLIError("--account and --session must be ids (UUID)") from exc
    try:
        queued = queue_backfill(context_for(settings), account_id, session_ids=session_ids)
    except LLMUnavailable as exc:
        raise CLIError(f"the batch lane needs an LLM: {exc}") from exc
    return {"queued": queued}


def ensure_demo(settings: Settings) -> dict[str, Any]:
    """The demo account `make run` prints tokens for; idempotent."""
    demo_users = (
        ("owner@demo.resolutionflow.local", "owner"),
        ("engineer@demo.resolutionflow.local", "engineer"),
    )
    password = "demo-password"
    with db.transaction() as session:
        account = session.execute(
            select(Account).where(Account.name == "Demo MSP")
        ).scalar_one_or_none()
        if account is None:
            account = Account(name="Demo MSP")
            session.add(account)
            session.flush()
        team_id = _team_for(session, account.id, "Helpdesk")
        users = {}
        for email, role in demo_users:
            user = session.execute(select(User).where(User.email == email)).scalar_one_or_none()
            if user is None:
                user = User(
                    account_id=account.id,
                    team_id=team_id,
                    email=email,
                    account_role=role,
                    password_hash=hash_password(password),
                )
                session.add(user)
                session.flush()
            users[role] = {
                "email": email,
                "password": password,
                "token": issue_token(settings.secret_key, user.id, settings.TOKEN_TTL_S),
            }
        return {"account_id": str(account.id), "users": users}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m app.cli", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    p = sub.add_parser("create-account", help="create an account (tenant)")
    p.add_argument("--name", required=True)
    p = sub.add_parser("create-user", help="create a user and print a token")
    p.add_argument("--account", required=True)
    p.add_argument("--email", required=True)
    p.add_argument("--role", required=True, choices=ACCOUNT_ROLES)
    p.add_argument("--team")
    p.add_argument("--super-admin", action="store_true")
    p.add_argument("--password")
    p = sub.add_parser("token", help="issue a bearer token for a user")
    p.add_argument("--email", required=True)
    p.add_argument("--ttl", type=int, help="lifetime in seconds (positive)")
    p = sub.add_parser("set-password", help="set a user's password (stdin without --password)")
    p.add_argument("--email", required=True)
    p.add_argument("--password")
    p = sub.add_parser("list-users", help="list users, with their role and status")
    p.add_argument("--account")
    p = sub.add_parser("disable-user", help="disable a user: sign-in and tokens stop working")
    p.add_argument("--email", required=True)
    p = sub.add_parser("enable-user", help="enable a disabled user again")
    p.add_argument("--email", required=True)
    sub.add_parser("load-library", help="load the built-in script library (idempotent)")
    p = sub.add_parser("set-ticketing", help="set an account's ticketing webhook")
    p.add_argument("--account", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--secret")
    sub.add_parser("demo", help="create the demo account and print its users' tokens")
    sub.add_parser(
        "rotate-integration-key",
        help="re-encrypt stored integration secrets with the first INTEGRATION_KEY",
    )
    p = sub.add_parser("backfill-notes", help="queue note re-generations for the batch lane")
    p.add_argument("--account", required=True)
    p.add_argument("--session")
    p = sub.add_parser("usage", help="an account's LLM usage and cost, as JSON")
    p.add_argument("--account", required=True)
    p.add_argument("--from", dest="start", help="first UTC day (YYYY-MM-DD), inclusive")
    p.add_argument("--to", dest="end", help="last UTC day (YYYY-MM-DD), inclusive")
    return parser


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    try:
        settings = runtime.configure()
    except ConfigError as exc:
        raise CLIError(str(exc)) from exc
    commands: dict[str, Callable[[], dict[str, Any]]] = {
        "migrate": lambda: migrate_command(settings),
        "create-account": lambda: create_account(args.name),
        "create-user": lambda: create_user(
            settings,
            account=args.account,
            email=args.email,
            role=args.role,
            team=args.team,
            super_admin=args.super_admin,
            password=args.password,
        ),
        "token": lambda: token(settings, email=args.email, ttl=args.ttl),
        "set-password": lambda: set_password(email=args.email, password=args.password),
        "list-users": lambda: list_users(account=args.account),
        "disable-user": lambda: set_active(email=args.email, active=False),
        "enable-user": lambda: set_active(email=args.email, active=True),
        "load-library": load_library,
        "set-ticketing": lambda: set_ticketing(
            settings, account=args.account, url=args.url, secret=args.secret
        ),
        "demo": lambda: ensure_demo(settings),
        "rotate-integration-key": rotate_integration_key,
        "backfill-notes": lambda: backfill_notes(
            settings, account=args.account, session=args.session
        ),
        "usage": lambda: usage(account=args.account, start=args.start, end=args.end),
    }
    return commands[args.command]()


def _fail(message: str) -> int:
    print(json.dumps({"error": message}), file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Every failure, expected or not, is one JSON object on stderr and exit code 2."""
    try:
        result = run(argv)
    except (CLIError, DataDirInUse) as exc:
        return _fail(str(exc))
    except ConfigError as exc:
        return _fail(str(exc))
    except SystemExit as exc:  # --help prints usage and exits 0; keep that
        if exc.code in (0, None):
            return 0
        return _fail(f"exited with {exc.code}")
    except Exception as exc:  # noqa: BLE001 - the CLI's contract is JSON errors, never a traceback
        return _fail(f"{type(exc).__name__}: {exc}")
    finally:
        # An embedded Redis this command started is stopped; a running stack's is left alone.
        runtime.release_servers()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())

"""Each account's ticketing integration: one kind (a signed webhook or a native adapter), its
base URL, its credentials (encrypted at rest, never returned) and options. Used by the API and
`app.cli set-ticketing`."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from services.notes import delivery
from services.notes.adapters import ADAPTERS, adapter_for
from services.notes.adapters.base import Adapter, Target, TargetError, Transport
from services.notes.adapters.http import OutboundTransport
from shared import outbound
from shared.errors import InvalidInput, NotFound
from shared.models import TicketingIntegration

SECRET_PREFIX = "whsec_"


class IntegrationError(InvalidInput):
    """The endpoint or secret cannot be used; `errors` names the field (422)."""


@dataclass(frozen=True)
class TicketingResult:
    """What a configuration returns: the secret is here once, never again."""

    account_id: uuid.UUID
    url: str
    secret: str | None
    secret_generated: bool
    status: str
    kind: str = "webhook"
    secret_kept: bool = False
    credentials_set: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TicketingView:
    account_id: uuid.UUID
    url: str
    status: str
    disabled_reason: str | None
    updated_at: datetime
    kind: str = "webhook"
    label: str = "Webhook"
    credentials_set: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.url

    def redacted(self) -> TicketingView:
        """What members other than owners see: the URL's origin, no path or query."""
        return replace(self, url=outbound.origin(self.url) + "/…")


# Standard Webhooks secrets carry 24 to 64 random bytes.
_SECRET_BYTES = (24, 64)


def _check_secret(secret: str) -> str:
    secret = secret.strip()
    body = secret.removeprefix(SECRET_PREFIX)
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not secret.startswith(SECRET_PREFIX) or not (
        _SECRET_BYTES[0] <= len(raw) <= _SECRET_BYTES[1]
    ):
        raise IntegrationError(
            "invalid secret",
            errors={
                "secret": [
                    "must be a Standard Webhooks secret: whsec_ followed by the base64 of "
                    "24 to 64 random bytes (leave it out to have one generated)"
                ]
            },
        )
    return secret


def _row(session: Session, account_id: uuid.UUID) -> TicketingIntegration | None:
    return session.scalars(
        select(TicketingIntegration).where(TicketingIntegration.account_id == account_id)
    ).one_or_none()


def _vet(url: str, field_name: str, *, allow_private: bool) -> str:
    try:
        return outbound.vet_url(url, allow_private=allow_private).url
    except outbound.OutboundRefused as exc:
        raise IntegrationError(
            f"invalid {field_name}: {exc}", errors={field_name: [str(exc)]}
        ) from exc


def stored_credentials(row: TicketingIntegration) -> dict[str, Any]:
    if not row.credentials:
        return {}
    loaded = json.loads(row.credentials)
    return loaded if isinstance(loaded, dict) else {}


def configure_ticketing(
    session: Session,
    *,
    account_id: uuid.UUID,
    url: str,
    secret: str | None,
    allow_private: bool,
) -> TicketingResult:
    """Store the account's webhook endpoint (replacing any previous integration, re-enabling
    it). The URL must be http(s) and, unless `allow_private`, resolve only to public addresses.

    The secret: the one given; else the current webhook's (a new URL, or re-enabling an
    endpoint disabled by a 410, keeps it); else a generated one, returned here once.
    """
    checked_url = _vet(url, "url", allow_private=allow_private)
    kept: str | None = None
    if not secret:
        row = _row(session, account_id)
        if row is not None and row.kind == "webhook" and row.secret:
            kept = row.secret
    generated = not secret and kept is None
    if secret:
        final_secret = _check_secret(secret)
    else:
        final_secret = kept or delivery.generate_secret()
    _upsert(
        session,
        account_id=account_id,
        kind="webhook",
        url=checked_url,
        secret=final_secret,
        credentials=None,
        options={},
    )
    return TicketingResult(
        account_id=account_id,
        url=checked_url,
        # A kept secret was shown when it was made; it is not shown again.
        secret=None if kept is not None else final_secret,
        secret_generated=generated,
        status="active",
        secret_kept=kept is not None,
        credentials_set=("secret",),
    )


def _upsert(
    session: Session,
    *,
    account_id: uuid.UUID,
    kind: str,
    url: str,
    secret: str,
    credentials: dict[str, Any] | None,
    options: dict[str, Any],
) -> None:
    creds = json.dumps(credentials, sort_keys=True) if credentials is not None else None
    values = {
        "kind": kind,
        "url": url,
        "secret": secret,
        "credentials": creds,
        "options": options,
        "status": "active",
        "disabled_reason": None,
    }
    # The column types encrypt url, secret and credentials (EncryptedText) in both clauses.
    session.execute(
        pg_insert(TicketingIntegration)
        .values(id=uuid.uuid4(), account_id=account_id, **values)
        .on_conflict_do_update(
            index_elements=[TicketingIntegration.account_id],
            set_={**values, "updated_at": datetime.now().astimezone()},
        )
    )


def _field_errors(
    adapter: type[Adapter],
    given: Mapping[str, Any],
    previous: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The credentials to store: each field given, else (for a secret field) the one stored
    before for this kind; errors name ``credentials.<field>``."""
    errors: dict[str, list[str]] = {}
    known = {f.name for f in adapter.fields}
    for name in given:
        if name not in known:
            errors[f"credentials.{name}"] = [f"not a {adapter.label} credential field"]
    out: dict[str, Any] = {}
    for spec in adapter.fields:
        value = given.get(spec.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.secret and previous.get(spec.name):
                out[spec.name] = previous[spec.name]
            elif spec.required:
                errors[f"credentials.{spec.name}"] = ["is required"]
            continue
        if not isinstance(value, str) or len(value) > 2000:
            errors[f"credentials.{spec.name}"] = ["must be a string of at most 2000 characters"]
            continue
        out[spec.name] = value.strip()
    return out, errors


def _option_errors(
    adapter: type[Adapter], given: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    specs = {f.name: f for f in adapter.options}
    out: dict[str, Any] = {}
    for name, value in given.items():
        spec = specs.get(name)
        if spec is None:
            errors[f"options.{name}"] = [f"not a {adapter.label} option"]
        elif spec.type == "boolean" and not isinstance(value, bool):
            errors[f"options.{name}"] = ["must be true or false"]
        elif spec.type != "boolean" and (
            isinstance(value, bool) or not isinstance(value, str | int)
        ):
            errors[f"options.{name}"] = ["must be a string or a number"]
        else:
            out[name] = value
    return out, errors


def configure_integration(
    session: Session,
    *,
    account_id: uuid.UUID,
    kind: str,
    base_url: str | None,
    credentials: Mapping[str, Any],
    options: Mapping[str, Any],
    allow_private: bool,
) -> TicketingResult:
    """Store the account's integration of ``kind`` (replacing any other, re-enabling it).

    Every field is checked against the kind's own list; a secret field left out keeps the
    value stored for the same kind. The base URL (and any token or zone-lookup URL the kind
    calls) must resolve to public addresses unless `allow_private`.
    """
    if kind == "webhook":
        secret = credentials.get("secret")
        if secret is not None and not isinstance(secret, str):
            raise IntegrationError("invalid secret", errors={"credentials.secret": ["string"]})
        if not base_url:
            raise IntegrationError("base_url is required", errors={"base_url": ["is required"]})
        return configure_ticketing(
            session,
            account_id=account_id,
            url=base_url,
            secret=secret or None,
            allow_private=allow_private,
        )
    adapter = ADAPTERS.get(kind)
    if adapter is None:
        raise IntegrationError(
            f"unknown kind {kind!r}", errors={"kind": [f"must be one of {sorted(ADAPTERS)}"]}
        )
    row = _row(session, account_id)
    previous = stored_credentials(row) if row is not None and row.kind == kind else {}
    creds, errors = _field_errors(adapter, credentials, previous)
    opts, option_errors = _option_errors(adapter, options)
    errors.update(option_errors)
    url = (base_url or "").strip()
    if adapter.needs_base_url and not url:
        errors["base_url"] = ["is required"]
    if errors:
        raise IntegrationError(f"invalid {adapter.label} configuration", errors=errors)
    if url:
        url = _vet(url, "base_url", allow_private=allow_private).rstrip("/")
    target = Target(base_url=url, credentials=creds, options=opts)
    for extra in adapter(_NO_HTTP).extra_urls(target):
        _vet(extra, "credentials" if "auth" in extra else "base_url", allow_private=allow_private)
    _upsert(
        session,
        account_id=account_id,
        kind=kind,
        url=url,
        secret="",
        credentials=creds,
        options=opts,
    )
    return TicketingResult(
        account_id=account_id,
        url=url,
        secret=None,
        secret_generated=False,
        status="active",
        kind=kind,
        credentials_set=tuple(sorted(creds)),
        options=opts,
    )


class _RefuseHttp:
    """A transport for adapters used only to describe their URLs: any call is a bug."""

    def request(self, method: str, url: str, **_: Any) -> Any:
        raise AssertionError("no HTTP call while saving a configuration")


_NO_HTTP: Transport = _RefuseHttp()


def get_ticketing(session: Session, *, account_id: uuid.UUID) -> TicketingView:
    row = _row(session, account_id)
    if row is None:
        raise NotFound("no ticketing integration is configured for this account")
    adapter = ADAPTERS.get(row.kind)
    creds = ("secret",) if row.kind == "webhook" else tuple(sorted(stored_credentials(row)))
    return TicketingView(
        account_id=row.account_id,
        url=row.url,
        status=row.status,
        disabled_reason=row.disabled_reason,
        updated_at=row.updated_at,
        kind=row.kind,
        label=adapter.label if adapter is not None else row.kind,
        credentials_set=creds,
        options=dict(row.options or {}),
    )


def delete_ticketing(session: Session, *, account_id: uuid.UUID) -> None:
    row = _row(session, account_id)
    if row is None:
        raise NotFound("no ticketing integration is configured for this account")
    session.delete(row)


@dataclass(frozen=True)
class Configured:
    """A stored integration ready to use: its adapter and decrypted target."""

    kind: str
    adapter: Adapter
    target: Target
    integration_id: uuid.UUID
    status: str
    disabled_reason: str | None


def target_for(row: TicketingIntegration, *, timeout_s: float, allow_private: bool) -> Configured:
    credentials = {"secret": row.secret} if row.kind == "webhook" else stored_credentials(row)
    adapter = adapter_for(
        row.kind, OutboundTransport(allow_private=allow_private), allow_private=allow_private
    )
    return Configured(
        kind=row.kind,
        adapter=adapter,
        target=Target(
            base_url=row.url,
            credentials=credentials,
            options=dict(row.options or {}),
            timeout_s=timeout_s,
        ),
        integration_id=row.id,
        status=row.status,
        disabled_reason=row.disabled_reason,
    )


def configured_ticketing(
    session: Session, *, account_id: uuid.UUID, timeout_s: float, allow_private: bool
) -> Configured:
    """The account's stored integration, ready to call (404 when there is none)."""
    row = _row(session, account_id)
    if row is None:
        raise NotFound("no ticketing integration is configured for this account")
    return target_for(row, timeout_s=timeout_s, allow_private=allow_private)


def check_ticketing(configured: Configured, ticket_ref: str | None) -> dict[str, Any]:
    """One harmless authenticated call with the stored configuration: {ok, detail}. Takes no
    database session: the caller has closed it, so none is held across the outbound call."""
    try:
        seen = configured.adapter.check(configured.target, ticket_ref or None)
    except TargetError as exc:
        out: dict[str, Any] = {"ok": False, "detail": str(exc)}
        if exc.detail:
            out["answer"] = exc.detail
        if exc.request_id:
            out["request_id"] = exc.request_id
        return out
    return {"ok": True, "detail": seen}

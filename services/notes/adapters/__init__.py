"""Ticketing adapters: one module per target system behind the interface of
:class:`services.notes.adapters.base.Adapter` (fields, render, post, find, check)."""

from __future__ import annotations

from typing import Any

from services.notes.adapters.autotask import AutotaskAdapter
from services.notes.adapters.base import Adapter, Transport
from services.notes.adapters.connectwise import ConnectWiseAdapter
from services.notes.adapters.freshservice import FreshserviceAdapter
from services.notes.adapters.halopsa import HaloPSAAdapter
from services.notes.adapters.jira_sm import JiraServiceManagementAdapter
from services.notes.adapters.redmine import RedmineAdapter
from services.notes.adapters.request_tracker import RequestTrackerAdapter
from services.notes.adapters.servicenow import ServiceNowAdapter
from services.notes.adapters.webhook import WebhookAdapter
from services.notes.adapters.zammad import ZammadAdapter
from services.notes.adapters.zendesk import ZendeskAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    cls.kind: cls
    for cls in (
        WebhookAdapter,
        ConnectWiseAdapter,
        AutotaskAdapter,
        HaloPSAAdapter,
        ZendeskAdapter,
        FreshserviceAdapter,
        JiraServiceManagementAdapter,
        ServiceNowAdapter,
        ZammadAdapter,
        RequestTrackerAdapter,
        RedmineAdapter,
    )
}
KINDS = tuple(ADAPTERS)


def adapter_for(kind: str, http: Transport, *, allow_private: bool = False) -> Adapter:
    """The adapter of ``kind`` calling out through ``http`` (the webhook goes through the
    same outbound client inside `services.notes.delivery`, hence ``allow_private``)."""
    if kind == WebhookAdapter.kind:
        return WebhookAdapter(http, allow_private=allow_private)
    try:
        return ADAPTERS[kind](http)
    except KeyError:
        raise ValueError(f"unknown ticketing kind {kind!r}") from None


def describe_kinds() -> list[dict[str, Any]]:
    """Every kind with its fields, for a form to be built from."""
    return [
        {
            "kind": cls.kind,
            "label": cls.label,
            "format": cls.dialect,
            "base_url": {
                "required": cls.needs_base_url,
                "help": cls.base_url_help,
            },
            "credentials": [f.describe() for f in cls.fields],
            "options": [f.describe() for f in cls.options],
        }
        for cls in ADAPTERS.values()
    ]

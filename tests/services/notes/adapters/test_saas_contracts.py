"""Contract tests of the SaaS adapters against strict fakes of each vendor's API: the note lands
once, internal, in the target's format; a committed-then-lost answer, a 5xx after commit, a 429
with Retry-After, refused credentials and a missing ticket each end as the delivery rules say."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pytest

from services.notes.adapters import adapter_for
from services.notes.adapters.base import Target
from services.notes.adapters.http import OutboundTransport
from services.notes.delivery import Outcome
from services.notes.ticketing import TicketAttempt, attempt
from tests.support import fake_saas
from tests.support.fake_saas import Fake

NOTE = (
    "## Problem\nOutlook <script>alert(1)</script> crashed on **start**.\n\n"
    "## Resolution\n- Repaired the profile\n- Cleared `[code]<img src=x onerror=alert(1)>[/code]`\n"
)
HTTP = OutboundTransport(allow_private=True)


@dataclass(frozen=True)
class Case:
    kind: str
    fake: type[Fake]
    ticket: str
    stored_under: str  # the key the fake stores notes under for `ticket`
    missing: str
    internal: Callable[[dict[str, Any]], bool]
    text: Callable[[dict[str, Any]], str]
    base_url: Callable[[Any], str] = lambda fake: fake.base_url
    options: dict[str, Any] = field(default_factory=dict)


def _adf_valid(body: Any) -> bool:
    return isinstance(body, dict) and fake_saas._ADF.is_valid(body)


CASES = [
    Case(
        "zendesk",
        fake_saas.ZendeskFake,
        "4711",
        "4711",
        "999",
        internal=lambda n: n["public"] is False,
        text=lambda n: n["html_body"],
    ),
    Case(
        "freshservice",
        fake_saas.FreshserviceFake,
        "321",
        "321",
        "999",
        internal=lambda n: n["private"] is True,
        text=lambda n: n["body"],
    ),
    Case(
        "jira_sm",
        fake_saas.JiraFake,
        "HELP-42",
        "HELP-42",
        "HELP-999",
        internal=lambda n: n["jsdPublic"] is False,
        text=lambda n: json.dumps(n["body"]),
    ),
    Case(
        "connectwise",
        fake_saas.ConnectWiseFake,
        "5150",
        "5150",
        "999",
        internal=lambda n: (
            n["internalAnalysisFlag"] and n["resolutionFlag"] and not n["detailDescriptionFlag"]
        ),
        text=lambda n: n["text"],
        base_url=lambda fake: fake.codebase_url,
    ),
    Case(
        "zammad",
        fake_saas.ZammadFake,
        "31001",
        "31001",
        "99999",
        internal=lambda n: (
            n["internal"] is True and n["type"] == "note" and n["content_type"] == "text/html"
        ),
        text=lambda n: n["body"],
    ),
    Case(
        "servicenow",
        fake_saas.ServiceNowFake,
        "INC0010042",
        "INC0010042",
        "INC0099999",
        internal=lambda n: n["element"] == "work_notes",
        text=lambda n: n["value"],
    ),
    Case(
        "halopsa",
        fake_saas.HaloFake,
        "880",
        "880",
        "999",
        internal=lambda n: n["hiddenfromuser"] is True,
        text=lambda n: n["note_html"],
    ),
    Case(
        "autotask",
        fake_saas.AutotaskFake,
        "9001",
        "9001",
        "999",
        internal=lambda n: n["publish"] == 2,
        text=lambda n: n["description"],
        base_url=lambda fake: fake.base_url + "/atservicesrest",
    ),
]
FORMAT = {
    "zendesk": "html", "freshservice": "html", "zammad": "html", "halopsa": "html",
    "jira_sm": "adf", "connectwise": "plain", "autotask": "plain", "servicenow": "servicenow",
}  # fmt: skip


@pytest.fixture(params=CASES, ids=lambda c: c.kind)
def case(request: pytest.FixtureRequest) -> Iterator[tuple[Case, Any]]:
    spec: Case = request.param
    with spec.fake() as fake:
        yield spec, fake


def _target(spec: Case, fake: Any, **credentials: str) -> Target:
    return Target(
        base_url=spec.base_url(fake),
        credentials={**fake.credentials, **credentials},
        options=spec.options,
        timeout_s=10,
    )


def _deliver(spec: Case, fake: Any, note_id: str, *, look_first: bool, ticket: str | None = None,
             **credentials: str) -> TicketAttempt:  # fmt: skip
    return attempt(
        adapter_for(spec.kind, HTTP),
        _target(spec, fake, **credentials),
        note_id=note_id,
        ticket_ref=ticket or spec.ticket,
        markdown=NOTE,
        webhook_payload={},
        look_first=look_first,
    )


def _marked(spec: Case, fake: Any, note_id: str) -> list[dict[str, Any]]:
    return [n for n in fake.notes(spec.stored_under) if f"RF-Ref: {note_id}" in spec.text(n)]


def test_one_internal_note_in_the_targets_format(case: tuple[Case, Any]) -> None:
    spec, fake = case
    note_id = str(uuid.uuid4())

    result = _deliver(spec, fake, note_id, look_first=False)

    assert result.outcome is Outcome.DELIVERED, (result.error, result.detail)
    (note,) = _marked(spec, fake, note_id)
    assert spec.internal(note)
    text = spec.text(note)
    dialect = FORMAT[spec.kind]
    if dialect == "html":
        assert "<strong>start</strong>" in text and "<script>" not in text
        assert "&lt;script&gt;" in text
    elif dialect == "adf":
        assert _adf_valid(note["body"])
    else:
        assert "**" not in text and "<strong>" not in text and "start" in text
    if dialect == "servicenow":
        assert "[code]" not in text.lower() and "[\u200bcode]" in text
    assert result.posted is not None and result.posted.ticket


def test_committed_then_dropped_answer_ends_with_one_note(case: tuple[Case, Any]) -> None:
    spec, fake = case
    note_id = str(uuid.uuid4())
    fake.program(["drop_after_commit"])

    first = _deliver(spec, fake, note_id, look_first=False)
    assert first.outcome is Outcome.RETRY, first
    assert len(_marked(spec, fake, note_id)) == 1  # the target did commit it

    retry = _deliver(spec, fake, note_id, look_first=True)
    assert retry.outcome is Outcome.DELIVERED
    assert retry.posted is not None and retry.posted.found
    assert len(_marked(spec, fake, note_id)) == 1


def test_5xx_after_commit_then_retry_ends_with_one_note(case: tuple[Case, Any]) -> None:
    spec, fake = case
    note_id = str(uuid.uuid4())
    fake.program(["500_after_commit"])

    first = _deliver(spec, fake, note_id, look_first=False)
    assert first.outcome is Outcome.RETRY and first.status_code == 500
    writes = fake.writes()
    retry = _deliver(spec, fake, note_id, look_first=True)

    assert retry.outcome is Outcome.DELIVERED
    assert fake.writes() == writes  # found it: nothing posted again
    assert len(_marked(spec, fake, note_id)) == 1


def test_429_is_retried_after_the_targets_retry_after(case: tuple[Case, Any]) -> None:
    spec, fake = case
    note_id = str(uuid.uuid4())
    fake.program(["429"])

    first = _deliver(spec, fake, note_id, look_first=False)
    assert first.outcome is Outcome.RETRY and first.status_code == 429
    assert first.retry_after == str(fake_saas.RETRY_AFTER_S)
    assert first.request_id
    assert _marked(spec, fake, note_id) == []

    assert _deliver(spec, fake, note_id, look_first=True).outcome is Outcome.DELIVERED
    assert len(_marked(spec, fake, note_id)) == 1


def test_refused_credentials_fail_without_retry(case: tuple[Case, Any]) -> None:
    spec, fake = case
    note_id = str(uuid.uuid4())
    fake.program(["401"])

    result = _deliver(spec, fake, note_id, look_first=False)

    assert result.outcome is Outcome.FAILED and result.status_code == 401
    assert result.error == f"{fake.label} refused the credentials (HTTP 401)"
    assert _marked(spec, fake, note_id) == []


def test_no_credential_reaches_the_recorded_attempt(case: tuple[Case, Any]) -> None:
    spec, fake = case
    fake.program(["401"])
    result = _deliver(spec, fake, "n", look_first=False)
    recorded = json.dumps([result.error, result.detail, result.request_id])
    for name, value in fake.credentials.items():
        if name in ("email", "username", "company_id"):
            continue
        assert value not in recorded, name


def test_a_missing_ticket_fails_naming_it(case: tuple[Case, Any]) -> None:
    spec, fake = case
    result = _deliver(spec, fake, str(uuid.uuid4()), look_first=False, ticket=spec.missing)
    assert result.outcome is Outcome.FAILED
    assert result.error == f"ticket {spec.missing} not found in {fake.label}"


def test_check_reads_the_ticket_and_reports_bad_credentials(case: tuple[Case, Any]) -> None:
    spec, fake = case
    adapter = adapter_for(spec.kind, HTTP)
    assert adapter.check(_target(spec, fake), spec.ticket)
    assert adapter.check(_target(spec, fake), None)
    from services.notes.adapters.base import TargetError

    secret_field = next(f.name for f in adapter.fields if f.secret)
    with pytest.raises(TargetError) as refused:
        adapter.check(_target(spec, fake, **{secret_field: "wrong"}), spec.ticket)
    assert refused.value.retryable is False


def test_servicenow_resolves_when_enabled() -> None:
    with fake_saas.ServiceNowFake() as fake:
        target = Target(
            base_url=fake.base_url,
            credentials=fake.credentials,
            options={"resolve": True, "close_code": "Solved (Permanently)"},
        )
        result = attempt(
            adapter_for("servicenow", HTTP),
            target,
            note_id="n1",
            ticket_ref="INC0010042",
            markdown=NOTE,
            webhook_payload={},
            look_first=False,
        )
        assert result.outcome is Outcome.DELIVERED, result.error
        state = fake.states["INC0010042"]
        assert state["state"] == "6" and state["close_code"] == "Solved (Permanently)"
        assert "RF-Ref: n1" in state["close_notes"]


def test_jira_fake_refuses_a_body_that_is_not_adf() -> None:
    # The fake is as strict as Jira: markdown where ADF belongs is a 400.
    import requests

    with fake_saas.JiraFake() as fake:
        response = requests.post(
            f"{fake.base_url}/rest/api/3/issue/HELP-42/comment",
            json={"body": {"type": "doc", "version": 1, "content": [{"type": "script"}]}},
            auth=(fake.email, fake.token),
            timeout=10,
        )
    assert response.status_code == 400
    assert jsonschema.Draft4Validator.check_schema  # the schema validator is the real one

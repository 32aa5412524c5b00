"""Similar past sessions: the account's resolved sessions closest by problem and facts, the
right one first for each pair, never another account's, and 4xx naming the field."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

# (past session, a new session about the same problem worded differently)
PAIRS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (
        {
            "title": "Print jobs stuck in the queue on PRN-SRV01",
            "problem": "Nobody on the 2nd floor can print; jobs sit in the queue",
            "facts": [
                ("symptom", "Print jobs stay queued and cannot be cancelled"),
                ("observation", "Spooler service on PRN-SRV01 is running but the queue is frozen"),
            ],
            "root_cause": "A corrupt spool file blocked the print spooler",
            "resolution": "Cleared the spool folder and restarted the spooler",
        },
        {
            "title": "Printer queue frozen again",
            "problem": "Documents sent to the floor printer never come out",
            "facts": [("symptom", "Queue shows jobs that will not cancel; spooler looks stuck")],
        },
    ),
    (
        {
            "title": "Outlook keeps prompting for a password",
            "problem": "Outlook asks for credentials every few minutes after the password change",
            "facts": [
                ("symptom", "Credential prompt loops in Outlook"),
                ("ruled_out", "MFA registration is fine"),
            ],
            "root_cause": "Stale credentials cached in Windows Credential Manager",
            "resolution": "Removed the cached Office credentials and signed in again",
        },
        {
            "title": "Credential prompt loop in Outlook",
            "problem": "User changed password, Outlook now prompts for the password constantly",
            "facts": [],
        },
    ),
    (
        {
            "title": "VPN drops every 10 minutes",
            "problem": "The FortiClient VPN tunnel disconnects on home Wi-Fi",
            "facts": [("observation", "Tunnel renegotiation fails; IKE timeouts in the log")],
            "root_cause": "The home router's SIP ALG interferes with IKE",
            "resolution": "Disabled SIP ALG on the router",
        },
        {
            "title": "FortiClient disconnects",
            "problem": "VPN tunnel keeps dropping from home",
            "facts": [("observation", "IKE timeout entries in FortiClient log")],
        },
    ),
    (
        {
            "title": "C: drive full on RDS host",
            "problem": "Users cannot log on to the terminal server, the system disk has no space",
            "facts": [("observation", "Disk space on C: is 0 bytes free, profiles are huge")],
            "root_cause": "Temp folders in roaming profiles filled the disk",
            "resolution": "Cleaned temp files and set a profile size limit",
        },
        {
            "title": "Terminal server out of disk space",
            "problem": "No free space left on C: drive of the RDS server",
            "facts": [],
        },
    ),
    (
        {
            "title": "Account keeps locking out",
            "problem": "jsmith's AD account locks out every morning",
            "facts": [("observation", "Lockout events 4740 come from the old laptop")],
            "root_cause": "The old laptop still had the previous password saved for a mapped drive",
            "resolution": "Removed the saved credentials on the old laptop",
        },
        {
            "title": "User locked out of Active Directory repeatedly",
            "problem": "Account lockout keeps happening, event 4740",
            "facts": [],
        },
    ),
]


def _make(client: Any, actor: Any, helpers: SimpleNamespace, spec: dict[str, Any]) -> str:
    sid = helpers.create_session(client, actor, title=spec["title"], problem=spec["problem"])["id"]
    for kind, text in spec.get("facts", []):
        helpers.add_fact(client, actor, sid, text, kind)
    if "root_cause" in spec:
        helpers.add_fact(client, actor, sid, spec["root_cause"], "root_cause")
        resolved = client.post(
            f"{helpers.base}/{sid}/resolve",
            json={"resolution": spec["resolution"]},
            headers=actor.headers,
        )
        assert resolved.status_code == 202, resolved.get_json()
    return str(sid)


def _similar(client: Any, actor: Any, helpers: SimpleNamespace, sid: str, **query: Any) -> Any:
    return client.get(f"{helpers.base}/{sid}/similar", query_string=query, headers=actor.headers)


def test_each_new_session_finds_its_past_session_first(
    pilot_client: Any, make_user: Any, helpers: SimpleNamespace
) -> None:
    engineer = make_user("engineer")
    outsider = make_user("engineer")
    past = [_make(pilot_client, engineer, helpers, p) for p, _ in PAIRS]
    # Another account's copy of every past session, word for word: never returned.
    foreign = {_make(pilot_client, outsider, helpers, p) for p, _ in PAIRS}

    hits = 0
    for (spec, new_spec), expected in zip(PAIRS, past, strict=True):
        sid = _make(pilot_client, engineer, helpers, new_spec)
        response = _similar(pilot_client, engineer, helpers, sid)
        assert response.status_code == 200, response.get_json()
        found = response.get_json()
        assert 1 <= len(found) <= 5
        assert not {f["session_id"] for f in found} & foreign
        assert sid not in {f["session_id"] for f in found}
        first = found[0]
        hits += first["session_id"] == expected
        assert first["session_id"] == expected, (new_spec["title"], [f["title"] for f in found])
        assert first["root_cause"] == [spec["root_cause"]]
        assert first["resolution"] == [spec["resolution"]]
        assert first["templates_used"] == []
        scores = [f["score"] for f in found]
        assert scores == sorted(scores, reverse=True)
    assert hits == len(PAIRS)

    # The outsider's session is a 404 to the engineer, and the other way round.
    any_foreign = next(iter(foreign))
    missing = _similar(pilot_client, engineer, helpers, any_foreign)
    assert missing.status_code == 404
    assert missing.get_json()["code"] == 404
    assert _similar(pilot_client, outsider, helpers, past[0]).status_code == 404


def test_limit_and_bad_input(pilot_client: Any, make_user: Any, helpers: SimpleNamespace) -> None:
    engineer = make_user("engineer")
    for spec, _ in PAIRS:
        _make(pilot_client, engineer, helpers, spec)
    sid = _make(
        pilot_client,
        engineer,
        helpers,
        {
            "title": "Printer, Outlook, VPN, disk and lockout all at once",
            "problem": "print "
            "queue spooler Outlook password VPN FortiClient disk space C: account lockout",
        },
    )
    one = _similar(pilot_client, engineer, helpers, sid, limit=1)
    assert one.status_code == 200 and len(one.get_json()) == 1
    assert len(_similar(pilot_client, engineer, helpers, sid).get_json()) == 5
    for query, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 6}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"lmit": 2}, "lmit"),
    ):
        bad = _similar(pilot_client, engineer, helpers, sid, **query)
        assert bad.status_code == 422, query
        assert field in str(bad.get_json()["errors"]), bad.get_json()
    nothing = _make(pilot_client, engineer, helpers, {"title": "zzqx", "problem": ""})
    assert _similar(pilot_client, engineer, helpers, nothing).get_json() == []
    assert pilot_client.get(f"{helpers.base}/{sid}/similar").status_code == 401


def test_the_search_document_is_stored_on_resolve_and_rewritten_after_a_reopen(
    pilot_client: Any, engineer: Any, helpers: SimpleNamespace
) -> None:
    import uuid

    from sqlalchemy import select

    from shared.db import db
    from shared.models import AISession

    def stored(sid: str) -> tuple[str | None, str | None]:
        with db.session() as session:
            row = session.execute(
                select(AISession.search_document, AISession.search_statement).where(
                    AISession.id == uuid.UUID(sid)
                )
            ).one()
            return row.search_document, row.search_statement

    past = _make(pilot_client, engineer, helpers, PAIRS[0][0])
    document, statement = stored(past)
    assert statement == "print jobs stuck in the queue on prn-srv01 " + (
        "nobody on the 2nd floor can print; jobs sit in the queue"
    )
    assert document is not None and "a corrupt spool file" in document
    # The resolution says how it ended, not what it was.
    assert "cleared the spool folder" not in document

    # Typos and all, the past session comes first.
    typo = helpers.create_session(
        pilot_client, engineer, title="Prnt jobs stuk in teh queu on PRN-SRV01", problem=""
    )["id"]
    found = _similar(pilot_client, engineer, helpers, typo)
    assert found.status_code == 200
    assert [item["session_id"] for item in found.get_json()][:1] == [past]

    reopened = pilot_client.post(f"{helpers.base}/{past}/reopen", headers=engineer.headers)
    assert reopened.status_code == 200, reopened.get_json()
    helpers.add_fact(
        pilot_client, engineer, past, "The spooler dependency RPCSS was fine", "ruled_out"
    )
    again = pilot_client.post(f"{helpers.base}/{past}/resolve", json={}, headers=engineer.headers)
    assert again.status_code == 202, again.get_json()
    assert "rpcss was fine" in (stored(past)[0] or "")

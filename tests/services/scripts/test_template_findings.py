"""The static check where templates are written and scripts rendered: the built-in library,
refusal of error findings unless acknowledged, findings in the generate answer."""

from __future__ import annotations

from typing import Any

from services.scripts.library import read_library
from shared.powershell_check import check_script

BASE = "/api/v1/scripts"


def test_the_builtin_library_has_no_unacknowledged_error() -> None:
    for template in read_library().templates:
        acknowledged = {a["rule"] for a in template["acknowledged_findings"]}
        for a in template["acknowledged_findings"]:
            assert a["reason"].strip(), template["slug"]
        errors = [
            f
            for f in check_script(template["script_body"])
            if f.severity == "error" and f.rule not in acknowledged
        ]
        assert not errors, (template["slug"], errors)


DANGEROUS_BODY = "iex (iwr {{url}})\n"
URL_SCHEMA = {"parameters": [{"key": "url", "label": "URL", "type": "url", "required": True}]}


def test_an_error_finding_refuses_the_save_until_acknowledged(
    client: Any, make_user: Any, category_id: Any
) -> None:
    engineer = make_user("engineer")
    body = {
        "category_id": str(category_id),
        "name": "Install agent",
        "script_body": DANGEROUS_BODY,
        "parameters_schema": URL_SCHEMA,
    }
    refused = client.post(f"{BASE}/templates", json=body, headers=engineer.headers)
    assert refused.status_code == 422
    [message] = refused.json["errors"]["script_body"]
    assert message.startswith("RF2002 downloaded-code-run (error, line 1)")
    assert "acknowledged_findings" in refused.json["message"]
    listed = client.get(f"{BASE}/templates?mine=true", headers=engineer.headers).json
    assert listed == [], "nothing written"

    no_reason = client.post(
        f"{BASE}/templates",
        json={**body, "acknowledged_findings": [{"rule": "RF2002"}]},
        headers=engineer.headers,
    )
    assert no_reason.status_code == 422
    unknown = client.post(
        f"{BASE}/templates",
        json={**body, "acknowledged_findings": [{"rule": "RF9999", "reason": "because"}]},
        headers=engineer.headers,
    )
    assert unknown.status_code == 422 and "acknowledged_findings" in unknown.json["errors"]

    ack = [{"rule": "RF2002", "reason": "vendor installer, pinned and signed"}]
    saved = client.post(
        f"{BASE}/templates", json={**body, "acknowledged_findings": ack}, headers=engineer.headers
    )
    assert saved.status_code == 201, saved.json
    assert saved.json["acknowledged_findings"] == ack
    assert [f["rule"] for f in saved.json["findings"]] == ["RF2002"]

    # A later edit keeps the acknowledgement; removing it refuses a dangerous body again.
    edited = client.put(
        f"{BASE}/templates/{saved.json['id']}",
        json={"script_body": DANGEROUS_BODY + "Write-Output 'done'\n"},
        headers=engineer.headers,
    )
    assert edited.status_code == 200
    withdrawn = client.put(
        f"{BASE}/templates/{saved.json['id']}",
        json={"acknowledged_findings": []},
        headers=engineer.headers,
    )
    assert withdrawn.status_code == 422 and "script_body" in withdrawn.json["errors"]


def test_warning_findings_do_not_refuse_and_reach_the_rendered_warnings(
    client: Any, make_user: Any, create_template: Any
) -> None:
    engineer = make_user("engineer")
    template = create_template(
        engineer,
        script_body="Write-Output {{target}}\nRestart-Computer -ComputerName {{service}} -Force\n",
    )
    assert [f["rule"] for f in template["findings"]] == ["RF1004"]
    generated = client.post(
        f"{BASE}/generate",
        json={"template_id": template["id"], "parameters": {"target": "pc1", "service": "pc1"}},
        headers=engineer.headers,
    ).json
    assert [f["rule"] for f in generated["findings"]] == ["RF1004"]
    assert generated["findings"][0]["line"] > 1, "lines of the rendered script"
    assert any(w.startswith("RF1004 shuts-down (warning") for w in generated["warnings"])

"""The static check of PowerShell: each rule on its own, the built-in library, and the check
on template writes and on rendered scripts."""

from __future__ import annotations

from typing import Any

import pytest

from services.scripts.library import read_library
from services.scripts.static_check import RULES, check_script

BASE = "/api/v1/scripts"

CASES = [
    ("Remove-Item -Path $folder -Recurse -Force", "RF1001"),
    ("Get-ChildItem C:\\x | Remove-Item -Recurse", "RF1001"),
    ("rm -Recurse $dir", "RF1001"),
    ("Remove-ADUser -Identity $u -Confirm:$false", "RF1001"),
    ("Disable-ADAccount -Identity $u", "RF1001"),
    ("Format-Volume -DriveLetter D -FileSystem NTFS", "RF1002"),
    ("Clear-Disk -Number 1 -RemoveData", "RF1002"),
    ("Remove-ItemProperty -Path HKLM:\\SOFTWARE\\Contoso -Name Token", "RF1003"),
    ("Remove-Item -Path 'HKCU:\\Software\\Contoso'", "RF1003"),
    ("reg delete HKLM\\Software\\Contoso /f", "RF1003"),
    ("Restart-Computer -Force", "RF1004"),
    ("Stop-Computer", "RF1004"),
    ("Set-ExecutionPolicy Unrestricted -Scope LocalMachine", "RF1005"),
    ("Set-ExecutionPolicy -ExecutionPolicy Unrestricted", "RF1005"),
    ("Invoke-Expression $command", "RF2001"),
    ("iex (iwr https://example.com/setup.ps1)", "RF2002"),
    ("Invoke-RestMethod https://example.com/x.ps1 | Invoke-Expression", "RF2002"),
    ("iex ((New-Object Net.WebClient).DownloadString('https://example.com/x'))", "RF2002"),
    ("& ([scriptblock]::Create((iwr https://example.com/x).Content))", "RF2002"),
    ("$s = ConvertTo-SecureString 'Summer2025!' -AsPlainText -Force", "RF3001"),
    ('$s = ConvertTo-SecureString -String "Summer2025!" -AsPlainText -Force', "RF3001"),
    ("$password = 'Summer2025!'", "RF3002"),
    ('$ApiKey = "abc123"', "RF3002"),
    ("New-LocalUser -Name kiosk -Password 'x'", "RF3002"),
    ("Set-MpPreference -DisableRealtimeMonitoring $true", "RF4001"),
    ("Set-MpPreference -DisableIOAVProtection:$true", "RF4001"),
    ("Add-MpPreference -ExclusionPath 'C:\\Tools'", "RF4002"),
    ("Set-NetFirewallProfile -Profile Domain,Private -Enabled False", "RF4003"),
    ("netsh advfirewall set allprofiles state off", "RF4003"),
]
CLEAN = [
    "Remove-Item -LiteralPath $file -Force",
    "Get-ChildItem -Recurse -Filter *.log",
    "$s = ConvertTo-SecureString -String $plain -AsPlainText -Force",
    "$passwordLastSet = (Get-ADUser $u -Properties PasswordLastSet).PasswordLastSet",
    "$password = Read-Host -AsSecureString",
    "Set-MpPreference -DisableRealtimeMonitoring $false",
    "Set-NetFirewallProfile -Profile Domain -Enabled True",
    "Set-ExecutionPolicy RemoteSigned -Scope Process",
    "Write-Output 'Remove-Item -Recurse is only text here'",
    "# Format-Volume in a comment",
]


@pytest.mark.parametrize(("script", "rule"), CASES)
def test_each_rule_finds_its_construct(script: str, rule: str) -> None:
    findings = check_script("Write-Output 'start'\n" + script + "\n")
    assert [f.rule for f in findings] == [rule], findings
    [finding] = findings
    assert finding.line == 2 and finding.severity == RULES[rule].severity
    assert finding.why and finding.excerpt == script[:160]


@pytest.mark.parametrize("script", CLEAN)
def test_harmless_lookalikes_are_not_flagged(script: str) -> None:
    assert check_script(script + "\n") == []


def test_every_rule_is_exercised() -> None:
    assert {rule for _, rule in CASES} == set(RULES)


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

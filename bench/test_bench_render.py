"""Rendering throughput: the template engine beside naive string substitution.

Run with ``python -m pytest bench/test_bench_render.py --benchmark-only``. Both benchmarks
render the same 60-line template with 10 parameters and sit in one group, so the report reads
as a ratio: what injection-safe rendering (validation, quoting, redacted copy) costs over
pasting raw values in with ``str.replace``, which is NOT safe and is only a yardstick.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.scripts.engine import ScriptTemplateEngine

PARAMETERS_SCHEMA: dict[str, Any] = {
    "parameters": [
        {
            "key": "username",
            "type": "string",
            "required": True,
            "validation": {"pattern": "[A-Za-z0-9._-]{1,20}"},
        },
        {
            "key": "new_password",
            "type": "password",
            "required": True,
            "validation": {"min_length": 12},
        },
        {"key": "mailbox", "type": "email", "required": True},
        {"key": "server", "type": "hostname", "required": True},
        {"key": "dns_server", "type": "ip", "required": True},
        {"key": "log_folder", "type": "path", "default": "C:\\Temp\\Logs"},
        {"key": "days", "type": "integer", "default": 30, "validation": {"min": 1, "max": 365}},
        {"key": "threshold", "type": "number", "default": 12.5},
        {"key": "dry_run", "type": "boolean", "default": True},
        {
            "key": "logs",
            "type": "multichoice",
            "options": ["Application", "System", "Setup"],
            "default": ["Application", "System"],
        },
    ]
}

_BODY_LINES = [
    "#Requires -Version 5.1",
    "$ErrorActionPreference = 'Stop'",
    "$user = Get-ADUser -Identity {{username}} -Properties LockedOut",
    "$secure = ConvertTo-SecureString -String {{new_password}} -AsPlainText -Force",
    "if (-not {{dry_run}}) {",
    "    Set-ADAccountPassword -Identity $user -Reset -NewPassword $secure",
    "    Unlock-ADAccount -Identity $user",
    "}",
    'Write-Output "Password reset for {{username}} (mailbox {{mailbox}})"',
    "$cutoff = (Get-Date).AddDays(-{{days}})",
    "Test-NetConnection -ComputerName {{server}} -Port 443 | Select-Object 'TcpTestSucceeded'",
    "Resolve-DnsName -Name {{server}} -Server {{dns_server}} -ErrorAction SilentlyContinue",
    "New-Item -ItemType Directory -Path {{log_folder}} -Force | Out-Null",
    "foreach ($log in {{logs}}) {",
    '    $file = Join-Path {{log_folder}} "$log.evtx"',
    "    wevtutil.exe epl $log $file",
    "}",
    "$free = (Get-PSDrive -Name C).Free / (1GB)",
    "if ($free -lt {{threshold}}) {",
    '    Write-Warning "Only $free GB free on {{server}}; threshold {{threshold}}"',
    "}",
]
# Pad to exactly 60 lines with ordinary script lines that have no placeholders.
SCRIPT_BODY = (
    "\n".join(
        _BODY_LINES
        + [
            f"Write-Verbose 'step {i}: checking state' -Verbose:$false"
            for i in range(60 - len(_BODY_LINES))
        ]
    )
    + "\n"
)
assert SCRIPT_BODY.count("\n") == 60

VALUES: dict[str, Any] = {
    "username": "jdoe",
    "new_password": "Corr3ct-Horse'Battery$(x)",
    "mailbox": "j.doe@example.com",
    "server": "dc01.corp.example.com",
    "dns_server": "10.0.0.10",
    "log_folder": "C:\\Temp\\O'Brien Logs",
    "days": 45,
    "threshold": 7.5,
    "dry_run": False,
    "logs": ["Application", "Setup"],
}

ENGINE = ScriptTemplateEngine()


def naive_render(body: str, values: dict[str, Any]) -> str:
    """The unsafe yardstick: paste each value's str() into every placeholder."""
    for key, value in values.items():
        body = body.replace("{{" + key + "}}", str(value))
    return body


@pytest.mark.benchmark(group="render")
def test_render_engine(benchmark: Any) -> None:
    rendered = benchmark(ENGINE.render, SCRIPT_BODY, PARAMETERS_SCHEMA, VALUES)
    assert "{{" not in rendered.script
    assert "Corr3ct-Horse" not in rendered.stored_script
    assert rendered.values["days"] == 45


@pytest.mark.benchmark(group="render")
def test_render_naive_str_replace_baseline(benchmark: Any) -> None:
    rendered = benchmark(naive_render, SCRIPT_BODY, VALUES)
    assert "{{" not in rendered

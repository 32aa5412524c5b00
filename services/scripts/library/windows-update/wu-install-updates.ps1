#Requires -RunAsAdministrator
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

$since = (Get-Date).AddDays(-{{days}})
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

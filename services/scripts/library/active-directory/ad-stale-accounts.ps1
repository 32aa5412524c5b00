#Requires -Modules ActiveDirectory
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

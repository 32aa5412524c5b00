$filter = @{
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

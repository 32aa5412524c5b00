$service = Get-Service -Name {{service_name}} -ErrorAction Stop
Write-Output "$($service.DisplayName) is $($service.Status)."
Restart-Service -InputObject $service -Force:{{force}}
$service.WaitForStatus('Running', [TimeSpan]::FromSeconds({{timeout_seconds}}))
$service.Refresh()
Write-Output "$($service.DisplayName) is now $($service.Status)."
$service.DependentServices | Select-Object 'Name', 'DisplayName', 'Status'

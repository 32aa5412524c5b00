$serviceName = {{service_name}}
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

$name = {{process_name}} -replace '\.exe$', ''
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

$destination = {{destination}}
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

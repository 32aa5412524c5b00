$threshold = {{warn_below_percent}}
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

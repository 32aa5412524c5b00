$cutoff = (Get-Date).AddDays(-{{stale_after_days}})
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

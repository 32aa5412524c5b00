$cutoff = (Get-Date).AddDays(-{{older_than_days}})
$dryRun = {{dry_run}}
$paths = @($env:TEMP, (Join-Path $env:SystemRoot 'Temp'))
if ({{include_all_profiles}}) {
    $usersFolder = Join-Path $env:SystemDrive 'Users'
    $paths += Get-ChildItem -LiteralPath $usersFolder -Directory -ErrorAction SilentlyContinue |
        ForEach-Object { Join-Path $_.FullName 'AppData\Local\Temp' }
}
$totalBytes = 0
$fileCount = 0
foreach ($path in ($paths | Select-Object -Unique)) {
    if (-not (Test-Path -LiteralPath $path)) { continue }
    $old = Get-ChildItem -LiteralPath $path -Recurse -Force -File -ErrorAction SilentlyContinue |
        Where-Object { $_.LastWriteTime -lt $cutoff }
    foreach ($file in $old) {
        $totalBytes += $file.Length
        $fileCount++
        if (-not $dryRun) {
            Remove-Item -LiteralPath $file.FullName -Force -ErrorAction SilentlyContinue
        }
    }
}
$verb = 'Deleted'
if ($dryRun) { $verb = 'Would delete' }
Write-Output ("{0} {1} file(s), {2:N1} MB." -f $verb, $fileCount, ($totalBytes / (1MB)))

$root = {{root_path}}
if (-not (Test-Path -LiteralPath $root -PathType Container)) {
    throw "Folder not found: $root"
}
Get-ChildItem -LiteralPath $root -Directory -Force -ErrorAction SilentlyContinue | ForEach-Object {
    $files = Get-ChildItem -LiteralPath $_.FullName -Recurse -Force -File -ErrorAction Ignore
    $bytes = ($files | Measure-Object -Property Length -Sum).Sum
    [pscustomobject]@{
        Folder = $_.FullName
        SizeGB = [math]::Round($bytes / (1GB), 2)
    }
} | Sort-Object SizeGB -Descending | Select-Object -First {{top}} | Format-Table -AutoSize

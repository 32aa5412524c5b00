$usersFolder = Join-Path $env:SystemDrive 'Users'
$profilePath = Join-Path $usersFolder {{username}}
if (-not (Test-Path -LiteralPath $profilePath)) {
    throw "No profile folder for {{username}} at $profilePath"
}
Get-Process -Name 'Teams', 'ms-teams' -ErrorAction SilentlyContinue |
    Where-Object {
        $_.ProcessName -eq 'ms-teams' -or -not $_.Path -or $_.Path -like "$profilePath*"
    } |
    Stop-Process -Force -ErrorAction SilentlyContinue
Start-Sleep -Seconds 3
$cacheFolders = @(
    (Join-Path $profilePath 'AppData\Roaming\Microsoft\Teams'),
    (Join-Path $profilePath 'AppData\Local\Packages\MSTeams_8wekyb3d8bbwe\LocalCache')
)
foreach ($folder in $cacheFolders) {
    if (Test-Path -LiteralPath $folder) {
        Remove-Item -LiteralPath $folder -Recurse -Force -ErrorAction SilentlyContinue
        Write-Output "Cleared $folder"
    }
}
Write-Output "Ask {{username}} to start Teams again."

#Requires -RunAsAdministrator
$services = 'wuauserv', 'cryptSvc', 'bits', 'msiserver'
Stop-Service -Name $services -Force -ErrorAction SilentlyContinue
$stamp = Get-Date -Format 'yyyyMMddHHmmss'
$folders = @(
    (Join-Path $env:SystemRoot 'SoftwareDistribution'),
    (Join-Path $env:SystemRoot 'System32\catroot2')
)
foreach ($folder in $folders) {
    if (Test-Path -LiteralPath $folder) {
        Rename-Item -LiteralPath $folder -NewName ((Split-Path $folder -Leaf) + ".old-$stamp")
        Write-Output "Renamed $folder"
    }
}
if ({{clear_bits_queue}}) {
    Get-BitsTransfer -AllUsers -ErrorAction SilentlyContinue |
        Remove-BitsTransfer -ErrorAction SilentlyContinue
}
Start-Service -Name $services -ErrorAction SilentlyContinue
Get-Service -Name $services | Select-Object 'Name', 'Status'
if ({{start_scan}}) {
    $usoClient = Join-Path $env:SystemRoot 'System32\UsoClient.exe'
    Start-Process -FilePath $usoClient -ArgumentList 'StartScan' -NoNewWindow
    Write-Output "Update scan started."
}

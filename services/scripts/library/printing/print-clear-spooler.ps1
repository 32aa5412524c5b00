$spoolFolder = Join-Path $env:SystemRoot 'System32\spool\PRINTERS'
Stop-Service -Name Spooler -Force
(Get-Service -Name Spooler).WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
$files = Get-ChildItem -LiteralPath $spoolFolder -File -ErrorAction SilentlyContinue
$files | Remove-Item -Force -ErrorAction SilentlyContinue
Write-Output "Removed $(@($files).Count) spool file(s)."
Start-Service -Name Spooler
(Get-Service -Name Spooler).WaitForStatus('Running', [TimeSpan]::FromSeconds(30))
Write-Output "Spooler is $((Get-Service -Name Spooler).Status)."
if ({{show_queues}}) {
    Get-Printer | Select-Object 'Name', 'PrinterStatus', 'JobCount', 'PortName' |
        Format-Table -AutoSize
}

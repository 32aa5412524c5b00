if ({{update_signatures}}) {
    Update-MpSignature
}
Get-MpComputerStatus |
    Select-Object 'AMServiceEnabled', 'AntivirusEnabled', 'RealTimeProtectionEnabled',
    'BehaviorMonitorEnabled', 'IsTamperProtected', 'AntivirusSignatureVersion',
    'AntivirusSignatureLastUpdated', 'QuickScanEndTime', 'FullScanEndTime'
if ({{scan_type}} -ne 'None') {
    Start-MpScan -ScanType {{scan_type}}
    Write-Output "{{scan_type}} finished."
}
Get-MpThreatDetection | Sort-Object InitialDetectionTime -Descending | Select-Object -First 10 |
    Select-Object 'InitialDetectionTime', 'ThreatID', 'ActionSuccess', 'Resources'

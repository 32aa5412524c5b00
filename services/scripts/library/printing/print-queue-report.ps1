Get-Printer | Sort-Object Name | ForEach-Object {
    $jobs = @(Get-PrintJob -PrinterName $_.Name -ErrorAction SilentlyContinue)
    [pscustomobject]@{
        Printer = $_.Name
        Status  = $_.PrinterStatus
        Port    = $_.PortName
        Driver  = $_.DriverName
        Shared  = $_.Shared
        Jobs    = $jobs.Count
        Oldest  = ($jobs | Sort-Object SubmittedTime | Select-Object -First 1).SubmittedTime
    }
} | Where-Object { -not {{only_with_jobs}} -or $_.Jobs -gt 0 } | Format-Table -AutoSize

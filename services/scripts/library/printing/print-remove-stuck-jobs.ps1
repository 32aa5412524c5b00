$printerName = {{printer_name}}
$cutoff = (Get-Date).AddMinutes(-{{older_than_minutes}})
$jobs = Get-PrintJob -PrinterName $printerName | Where-Object { $_.SubmittedTime -lt $cutoff }
foreach ($job in $jobs) {
    Remove-PrintJob -InputObject $job
    Write-Output "Removed job $($job.Id) '$($job.DocumentName)' from $($job.UserName)."
}
Write-Output "$(@($jobs).Count) job(s) removed from $printerName."

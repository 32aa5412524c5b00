$printerName = {{printer_name}}
$driverName = {{driver_name}}
$portName = "IP_" + {{printer_ip}}
if (-not (Get-PrinterPort -Name $portName -ErrorAction SilentlyContinue)) {
    Add-PrinterPort -Name $portName -PrinterHostAddress {{printer_ip}}
}
if (-not (Get-PrinterDriver -Name $driverName -ErrorAction SilentlyContinue)) {
    Add-PrinterDriver -Name $driverName
}
if (Get-Printer -Name $printerName -ErrorAction SilentlyContinue) {
    Write-Output "Printer $printerName already exists."
} else {
    Add-Printer -Name $printerName -DriverName $driverName -PortName $portName
}
if ({{set_as_default}}) {
    $printer = Get-CimInstance -ClassName Win32_Printer | Where-Object { $_.Name -eq $printerName }
    Invoke-CimMethod -InputObject $printer -MethodName SetDefaultPrinter | Out-Null
}
Get-Printer -Name $printerName | Select-Object 'Name', 'DriverName', 'PortName', 'PrinterStatus'

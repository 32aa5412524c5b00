$target = {{target}}
$result = Test-NetConnection -ComputerName $target -TraceRoute -Hops {{max_hops}} `
    -WarningAction SilentlyContinue
Write-Output "Route to $target ($($result.RemoteAddress)):"
$hop = 0
foreach ($address in $result.TraceRoute) {
    $hop++
    Write-Output ("{0,3}  {1}" -f $hop, $address)
}
$pings = Test-Connection -ComputerName $target -Count {{ping_count}} -ErrorAction SilentlyContinue
$received = @($pings).Count
Write-Output "Ping: $received of {{ping_count}} replies."

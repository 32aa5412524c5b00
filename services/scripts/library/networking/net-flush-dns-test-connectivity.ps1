Clear-DnsClientCache
Write-Output "DNS client cache cleared."
$target = {{target}}
$port = {{port}}
Write-Output "Resolving $target ..."
Resolve-DnsName -Name $target -ErrorAction SilentlyContinue |
    Where-Object { $_.Type -in 'A', 'AAAA', 'CNAME' } |
    Select-Object 'Name', 'Type', 'IPAddress', 'NameHost' | Format-Table -AutoSize
Test-NetConnection -ComputerName $target -Port $port -InformationLevel Detailed |
    Select-Object 'ComputerName', 'RemoteAddress', 'RemotePort', 'InterfaceAlias', 'SourceAddress',
        'PingSucceeded', 'TcpTestSucceeded'

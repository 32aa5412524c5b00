$alias = {{interface_alias}}
$servers = @({{primary_dns}}, {{secondary_dns}}) | Where-Object { $_ }
Get-NetAdapter -Name $alias -ErrorAction Stop | Out-Null
if ({{reset_to_dhcp}}) {
    Set-DnsClientServerAddress -InterfaceAlias $alias -ResetServerAddresses
} else {
    Set-DnsClientServerAddress -InterfaceAlias $alias -ServerAddresses $servers
}
Clear-DnsClientCache
Get-DnsClientServerAddress -InterfaceAlias $alias -AddressFamily 'IPv4', 'IPv6' |
    Select-Object 'InterfaceAlias', 'AddressFamily', 'ServerAddresses'

$adapters = Get-NetAdapter |
    Where-Object { {{include_disconnected}} -or $_.Status -eq 'Up' }
foreach ($adapter in $adapters) {
    $index = $adapter.ifIndex
    $ip = Get-NetIPConfiguration -InterfaceIndex $index -ErrorAction SilentlyContinue
    $ipv4 = Get-NetIPInterface -InterfaceIndex $index -AddressFamily IPv4 -ErrorAction Ignore
    [pscustomobject]@{
        Name        = $adapter.Name
        Description = $adapter.InterfaceDescription
        Status      = $adapter.Status
        LinkSpeed   = $adapter.LinkSpeed
        MacAddress  = $adapter.MacAddress
        IPv4        = ($ip.IPv4Address.IPAddress -join ', ')
        IPv6        = ($ip.IPv6Address.IPAddress -join ', ')
        Gateway     = ($ip.IPv4DefaultGateway.NextHop -join ', ')
        DnsServers  = ($ip.DNSServer.ServerAddresses -join ', ')
        Dhcp        = $ipv4.Dhcp
    }
}

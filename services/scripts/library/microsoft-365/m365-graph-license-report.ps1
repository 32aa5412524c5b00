#Requires -Modules Microsoft.Graph.Authentication, Microsoft.Graph.Users
#Requires -Modules Microsoft.Graph.Identity.DirectoryManagement
$secret = ConvertTo-SecureString -String {{client_secret}} -AsPlainText -Force
$credential = [System.Management.Automation.PSCredential]::new({{client_id}}, $secret)
Connect-MgGraph -TenantId {{tenant_id}} -ClientSecretCredential $credential -NoWelcome
try {
    $skus = @{}
    Get-MgSubscribedSku | ForEach-Object { $skus[$_.SkuId] = $_.SkuPartNumber }
    $properties = 'DisplayName', 'UserPrincipalName', 'AccountEnabled', 'AssignedLicenses',
        'SignInActivity'
    Get-MgUser -All -Property $properties |
        Where-Object { $_.AssignedLicenses.Count -gt 0 } |
        Select-Object 'DisplayName', 'UserPrincipalName', 'AccountEnabled',
            @{ Name = 'Licenses'; Expression = {
                ($_.AssignedLicenses | ForEach-Object { $skus[$_.SkuId] }) -join ', '
            } },
            @{ Name = 'LastSignIn'; Expression = { $_.SignInActivity.LastSignInDateTime } } |
        Sort-Object DisplayName | Format-Table -AutoSize
} finally {
    Disconnect-MgGraph | Out-Null
}

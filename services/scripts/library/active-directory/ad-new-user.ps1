#Requires -Modules ActiveDirectory
$securePassword = ConvertTo-SecureString -String {{initial_password}} -AsPlainText -Force
$newUser = @{
    Name                  = "{{first_name}} {{last_name}}"
    GivenName             = {{first_name}}
    Surname               = {{last_name}}
    DisplayName           = "{{first_name}} {{last_name}}"
    SamAccountName        = {{username}}
    UserPrincipalName     = {{user_principal_name}}
    EmailAddress          = {{user_principal_name}}
    Path                  = {{ou}}
    AccountPassword       = $securePassword
    Enabled               = $true
    ChangePasswordAtLogon = $true
}
New-ADUser @newUser
foreach ($groupName in {{groups}}) {
    Add-ADGroupMember -Identity $groupName -Members {{username}}
}
Get-ADUser -Identity {{username}} -Properties MemberOf |
    Select-Object 'SamAccountName', 'UserPrincipalName', 'DistinguishedName', 'Enabled',
        @{ Name = 'Groups'; Expression = {
            ($_.MemberOf | ForEach-Object { ($_ -split ',')[0] -replace '^CN=' }) -join ', '
        } }

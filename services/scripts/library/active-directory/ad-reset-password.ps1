#Requires -Modules ActiveDirectory
$user = Get-ADUser -Identity {{username}}
$securePassword = ConvertTo-SecureString -String {{new_password}} -AsPlainText -Force
Set-ADAccountPassword -Identity $user -Reset -NewPassword $securePassword
if ({{unlock_account}}) {
    Unlock-ADAccount -Identity $user
}
Set-ADUser -Identity $user -ChangePasswordAtLogon {{must_change_at_logon}}
Get-ADUser -Identity $user -Properties 'PasswordLastSet', 'LockedOut', 'pwdLastSet' |
    Select-Object 'SamAccountName', 'Enabled', 'LockedOut', 'PasswordLastSet',
        @{ Name = 'MustChangeAtLogon'; Expression = { $_.pwdLastSet -eq 0 } }

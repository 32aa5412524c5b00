#Requires -RunAsAdministrator
$accountName = {{account_name}}
$account = Get-LocalUser -Name $accountName -ErrorAction Stop
$securePassword = ConvertTo-SecureString -String {{new_password}} -AsPlainText -Force
Set-LocalUser -InputObject $account -Password $securePassword `
    -PasswordNeverExpires {{password_never_expires}}
if ({{enable_account}}) {
    Enable-LocalUser -InputObject $account
}
Get-LocalUser -Name $accountName |
    Select-Object 'Name', 'Enabled', 'PasswordLastSet', 'PasswordExpires', 'LastLogon'

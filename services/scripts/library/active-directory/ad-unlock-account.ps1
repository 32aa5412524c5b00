#Requires -Modules ActiveDirectory
$properties = 'LockedOut', 'BadLogonCount', 'LastBadPasswordAttempt'
$user = Get-ADUser -Identity {{username}} -Properties $properties
if (-not $user.LockedOut) {
    Write-Output "Account $($user.SamAccountName) is not locked out."
} else {
    Unlock-ADAccount -Identity $user
    Write-Output "Unlocked $($user.SamAccountName)."
}
Get-ADUser -Identity $user -Properties $properties |
    Select-Object 'SamAccountName', 'Enabled', 'LockedOut', 'BadLogonCount',
        'LastBadPasswordAttempt'

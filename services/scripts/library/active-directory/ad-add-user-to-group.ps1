#Requires -Modules ActiveDirectory
$user = Get-ADUser -Identity {{username}}
$group = Get-ADGroup -Identity {{group_name}}
Add-ADGroupMember -Identity $group -Members $user
Write-Output "Added $($user.SamAccountName) to $($group.Name)."
Get-ADPrincipalGroupMembership -Identity $user | Sort-Object Name |
    Select-Object 'Name', 'GroupCategory', 'GroupScope'

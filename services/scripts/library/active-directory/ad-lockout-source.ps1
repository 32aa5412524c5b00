#Requires -Modules ActiveDirectory
$user = Get-ADUser -Identity {{username}}
$pdc = (Get-ADDomain).PDCEmulator
$filter = @{
    LogName   = 'Security'
    Id        = 4740
    StartTime = (Get-Date).AddHours(-{{hours}})
}
$events = Get-WinEvent -ComputerName $pdc -FilterHashtable $filter -ErrorAction SilentlyContinue |
    Where-Object { $_.Properties[0].Value -eq $user.SamAccountName }
if (-not $events) {
    $name = $user.SamAccountName
    Write-Output "No lockouts of $name recorded on $pdc in the last {{hours}} hours."
} else {
    $events | Select-Object 'TimeCreated',
        @{ Name = 'User'; Expression = { $_.Properties[0].Value } },
        @{ Name = 'CallerComputer'; Expression = { $_.Properties[1].Value } } |
        Sort-Object TimeCreated -Descending | Format-Table -AutoSize
}

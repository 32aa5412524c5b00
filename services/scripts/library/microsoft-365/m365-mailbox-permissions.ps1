#Requires -Modules ExchangeOnlineManagement
Connect-ExchangeOnline -ShowBanner:$false
try {
    $mailbox = Get-Mailbox -Identity {{mailbox}} -ErrorAction Stop
    Write-Output "Full Access on $($mailbox.PrimarySmtpAddress):"
    Get-MailboxPermission -Identity $mailbox.Identity |
        Where-Object { -not $_.IsInherited -and $_.User -notlike 'NT AUTHORITY\*' } |
        Select-Object 'User', 'AccessRights' | Format-Table -AutoSize
    Write-Output "Send As:"
    Get-RecipientPermission -Identity $mailbox.Identity |
        Where-Object { $_.Trustee -notlike 'NT AUTHORITY\*' } |
        Select-Object 'Trustee', 'AccessRights' | Format-Table -AutoSize
    Write-Output "Send on Behalf:"
    $mailbox.GrantSendOnBehalfTo
} finally {
    Disconnect-ExchangeOnline -Confirm:$false
}

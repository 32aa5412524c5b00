#Requires -Modules ExchangeOnlineManagement
Connect-ExchangeOnline -ShowBanner:$false
try {
    Set-Mailbox -Identity {{mailbox}} -Type Shared
    if ({{hide_from_gal}}) {
        Set-Mailbox -Identity {{mailbox}} -HiddenFromAddressListsEnabled $true
    }
    Get-Mailbox -Identity {{mailbox}} |
        Select-Object 'DisplayName', 'PrimarySmtpAddress', 'RecipientTypeDetails',
            'HiddenFromAddressListsEnabled'
    Write-Output "Remove the user's licence once the conversion shows as SharedMailbox."
} finally {
    Disconnect-ExchangeOnline -Confirm:$false
}

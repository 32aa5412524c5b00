#Requires -Modules ExchangeOnlineManagement
Connect-ExchangeOnline -ShowBanner:$false
try {
    $fullAccess = @{
        Identity        = {{mailbox}}
        User            = {{user}}
        AccessRights    = 'FullAccess'
        InheritanceType = 'All'
        AutoMapping     = {{auto_mapping}}
    }
    Add-MailboxPermission @fullAccess | Select-Object 'Identity', 'User', 'AccessRights'
    if ({{send_as}}) {
        Add-RecipientPermission -Identity {{mailbox}} -Trustee {{user}} -AccessRights SendAs `
            -Confirm:$false |
            Select-Object 'Identity', 'Trustee', 'AccessRights'
    }
} finally {
    Disconnect-ExchangeOnline -Confirm:$false
}

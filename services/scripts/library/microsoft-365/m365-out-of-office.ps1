#Requires -Modules ExchangeOnlineManagement
Connect-ExchangeOnline -ShowBanner:$false
try {
    $reply = @{
        Identity         = {{mailbox}}
        AutoReplyState   = 'Enabled'
        InternalMessage  = {{internal_message}}
        ExternalMessage  = {{external_message}}
        ExternalAudience = {{external_audience}}
    }
    if ({{start_date}} -and {{end_date}}) {
        $reply.AutoReplyState = 'Scheduled'
        $invariant = [cultureinfo]::InvariantCulture
        $reply.StartTime = [datetime]::ParseExact({{start_date}}, 'yyyy-MM-dd', $invariant)
        $reply.EndTime = [datetime]::ParseExact({{end_date}}, 'yyyy-MM-dd', $invariant)
    }
    if (-not $reply.ExternalMessage) {
        $reply.ExternalMessage = $reply.InternalMessage
    }
    Set-MailboxAutoReplyConfiguration @reply
    Get-MailboxAutoReplyConfiguration -Identity {{mailbox}} |
        Select-Object 'Identity', 'AutoReplyState', 'StartTime', 'EndTime', 'ExternalAudience'
} finally {
    Disconnect-ExchangeOnline -Confirm:$false
}

$filter = @{
    LogName   = 'System'
    Id        = 41, 1074, 6008
    StartTime = (Get-Date).AddDays(-{{days}})
}
Get-WinEvent -FilterHashtable $filter -ErrorAction SilentlyContinue |
    Select-Object 'TimeCreated', 'Id',
        @{ Name = 'Kind'; Expression = {
            switch ($_.Id) {
                41 { 'Crash / power loss (Kernel-Power)' }
                6008 { 'Unexpected shutdown' }
                1074 { 'Planned restart or shutdown' }
            }
        } },
        @{ Name = 'Detail'; Expression = { ($_.Message -split "`r?`n")[0] } } |
    Sort-Object TimeCreated -Descending | Format-Table -AutoSize -Wrap

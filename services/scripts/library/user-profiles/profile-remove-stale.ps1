#Requires -RunAsAdministrator
$cutoff = (Get-Date).AddDays(-{{older_than_days}})
$dryRun = {{dry_run}}
$excluded = @({{exclude_users}} -split '\s*,\s*' | Where-Object { $_ })
$excluded += 'Administrator', 'Public', 'Default'
$profiles = Get-CimInstance -ClassName Win32_UserProfile | Where-Object {
    -not $_.Special -and -not $_.Loaded -and $_.LastUseTime -and $_.LastUseTime -lt $cutoff -and
    ($excluded -notcontains (Split-Path $_.LocalPath -Leaf))
}
foreach ($profile in $profiles) {
    if ($dryRun) {
        Write-Output "Would remove $($profile.LocalPath) (last used $($profile.LastUseTime))"
    } else {
        Remove-CimInstance -InputObject $profile
        Write-Output "Removed $($profile.LocalPath)"
    }
}
Write-Output "$(@($profiles).Count) profile(s) unused for {{older_than_days}}+ days."

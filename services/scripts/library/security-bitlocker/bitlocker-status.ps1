#Requires -RunAsAdministrator
Get-BitLockerVolume | ForEach-Object {
    [pscustomobject]@{
        MountPoint    = $_.MountPoint
        VolumeType    = $_.VolumeType
        Status        = $_.VolumeStatus
        Protection    = $_.ProtectionStatus
        Percent       = $_.EncryptionPercentage
        Method        = $_.EncryptionMethod
        KeyProtectors = ($_.KeyProtector.KeyProtectorType -join ', ')
    }
} | Format-Table -AutoSize
if ({{show_recovery_key_ids}}) {
    Get-BitLockerVolume | ForEach-Object {
        $mountPoint = $_.MountPoint
        $_.KeyProtector | Where-Object { $_.KeyProtectorType -eq 'RecoveryPassword' } |
            Select-Object @{ Name = 'MountPoint'; Expression = { $mountPoint } }, 'KeyProtectorId'
    }
}

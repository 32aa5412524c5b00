#Requires -RunAsAdministrator
$mountPoint = {{mount_point}}
$volume = Get-BitLockerVolume -MountPoint $mountPoint
$protectors = @($volume.KeyProtector | Where-Object { $_.KeyProtectorType -eq 'RecoveryPassword' })
if ($protectors.Count -eq 0) {
    if (-not {{create_if_missing}}) {
        throw "$mountPoint has no recovery password protector."
    }
    Add-BitLockerKeyProtector -MountPoint $mountPoint -RecoveryPasswordProtector | Out-Null
    $volume = Get-BitLockerVolume -MountPoint $mountPoint
    $protectors = @($volume.KeyProtector |
        Where-Object { $_.KeyProtectorType -eq 'RecoveryPassword' })
}
foreach ($protector in $protectors) {
    $id = $protector.KeyProtectorId
    switch ({{destination}}) {
        'ActiveDirectory' {
            Backup-BitLockerKeyProtector -MountPoint $mountPoint -KeyProtectorId $id | Out-Null
        }
        'EntraID' {
            BackupToAAD-BitLockerKeyProtector -MountPoint $mountPoint -KeyProtectorId $id | Out-Null
        }
    }
    Write-Output "Backed up protector $id of $mountPoint to {{destination}}."
}

$ssid = {{ssid}}
$psk = {{pre_shared_key}}
$mode = if ({{connect_automatically}}) { 'auto' } else { 'manual' }
$ssidBytes = [System.Text.Encoding]::UTF8.GetBytes($ssid)
$ssidHex = -join ($ssidBytes | ForEach-Object { $_.ToString('X2') })
$ssidXml = [System.Security.SecurityElement]::Escape($ssid)
$pskXml = [System.Security.SecurityElement]::Escape($psk)
$profileXml = @"
<?xml version="1.0"?>
<WLANProfile xmlns="http://www.microsoft.com/networking/WLAN/profile/v1">
  <name>$ssidXml</name>
  <SSIDConfig><SSID><hex>$ssidHex</hex><name>$ssidXml</name></SSID></SSIDConfig>
  <connectionType>ESS</connectionType>
  <connectionMode>$mode</connectionMode>
  <MSM><security>
    <authEncryption><authentication>WPA2PSK</authentication><encryption>AES</encryption><useOneX>false</useOneX></authEncryption>
    <sharedKey><keyType>passPhrase</keyType><protected>false</protected><keyMaterial>$pskXml</keyMaterial></sharedKey>
  </security></MSM>
</WLANProfile>
"@
$file = Join-Path $env:TEMP ("wlan-" + [guid]::NewGuid().ToString() + ".xml")
try {
    Set-Content -LiteralPath $file -Value $profileXml -Encoding UTF8
    netsh.exe wlan add profile "filename=$file" "user=all"
} finally {
    Remove-Item -LiteralPath $file -Force -ErrorAction SilentlyContinue
}
netsh.exe wlan show profiles

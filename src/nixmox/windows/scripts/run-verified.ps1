# nixmox: run one of its scripts, only when the file is byte for byte what nixmox wrote.
# Run from the command line itself (-EncodedCommand) with $Nixmox set on the line above:
# Script (its path in nixmox's folder, which only SYSTEM and Administrators may write),
# Sha256 (of the text nixmox wrote) and Params (the script's parameters, splatted).
# nixmox-prelude
$ProgressPreference = 'SilentlyContinue'

$script = [string]$Nixmox.Script
$wanted = [string]$Nixmox.Sha256
try {
    $found = [string](Get-FileHash -LiteralPath $script -Algorithm SHA256).Hash
} catch {
    $found = "unreadable: $($_.Exception.Message)"
}
if ($found -ne $wanted) {
    Write-Report ([ordered]@{
        ok = $false
        refused = "$script is not the script nixmox wrote (SHA-256 $found, expected $wanted): not run"
    })
    exit 3
}
$params = @{}
foreach ($property in $Nixmox.Params.PSObject.Properties) { $params[$property.Name] = $property.Value }
$global:LASTEXITCODE = 0
& $script @params
exit $LASTEXITCODE

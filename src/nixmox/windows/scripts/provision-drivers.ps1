# nixmox: which virtio drivers drive devices, and whether the QEMU guest agent service runs.
# Checks only: nixmox has no driver media to install from (that is the virtio-win ISO).
param([switch]$CheckOnly)

# nixmox-prelude

$report = [ordered]@{ step = 'drivers'; ok = $true; changed = $false; detail = '' }
try {
    # The kernel services of the virtio-win drivers, per kind of device.
    $services = @{ net = @('netkvm'); storage = @('vioscsi', 'viostor'); balloon = @('balloon') }
    $devices = @(Get-CimInstance -ClassName Win32_PnPEntity | Where-Object { $_.Service })
    $found = [ordered]@{}
    foreach ($kind in @('net', 'storage', 'balloon')) {
        $working = $devices | Where-Object {
            ($services[$kind] -contains $_.Service) -and ($_.ConfigManagerErrorCode -eq 0)
        }
        $found[$kind] = @($working | ForEach-Object { [string]$_.Name })
    }
    $report['drivers'] = $found
    $service = Get-Service -Name 'QEMU-GA' -ErrorAction SilentlyContinue
    if ($service) {
        $report['agent_service'] = [string]$service.Status
    } else {
        $report['agent_service'] = 'missing'
    }
    $report['detail'] = 'virtio devices: ' + (($found.Keys | ForEach-Object { "$_=$($found[$_].Count)" }) -join ', ')
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

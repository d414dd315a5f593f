# nixmox: the passed-through display adapters and their problem codes (43: the driver
# stopped the device). Emulated adapters are left out: with passthrough the Microsoft
# Basic Display Adapter on the emulated VGA is often disabled (code 22), and fine.
param([switch]$CheckOnly)

# nixmox-prelude

$report = [ordered]@{ step = 'postcheck'; ok = $true; changed = $false; detail = ''; gpus = @() }

# Emulated display adapters (as in provision-msi.ps1): virtio-gpu, QXL, bochs/std VGA,
# VMware, Hyper-V.
$emulated = @('VEN_1AF4', 'VEN_1B36', 'VEN_1234', 'VEN_15AD', 'VEN_1414')

try {
    $report['gpus'] = @(Get-CimInstance -ClassName Win32_PnPEntity |
        Where-Object { $_.PNPClass -eq 'Display' -and $_.DeviceID -like 'PCI\*' } |
        Where-Object { $emulated -notcontains ($_.DeviceID -split '\\')[1].Split('&')[0] } |
        ForEach-Object {
            [ordered]@{
                name = [string]$_.Name
                id = [string]$_.DeviceID
                status = [string]$_.Status
                code = [int]$_.ConfigManagerErrorCode
            }
        })
    $report['detail'] = "$($report['gpus'].Count) passed-through display adapters"
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

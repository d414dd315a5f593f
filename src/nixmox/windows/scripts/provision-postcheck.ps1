# nixmox: the display adapters and their problem codes (43: the driver stopped the device).
param([switch]$CheckOnly)

$ErrorActionPreference = 'Stop'
$report = [ordered]@{ step = 'postcheck'; ok = $true; changed = $false; detail = ''; gpus = @() }
try {
    $report['gpus'] = @(Get-CimInstance -ClassName Win32_PnPEntity |
        Where-Object { $_.PNPClass -eq 'Display' -and $_.DeviceID -like 'PCI\*' } |
        ForEach-Object {
            [ordered]@{
                name = [string]$_.Name
                id = [string]$_.DeviceID
                status = [string]$_.Status
                code = [int]$_.ConfigManagerErrorCode
            }
        })
    $report['detail'] = "$($report['gpus'].Count) display adapters"
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
}
Write-Output ($report | ConvertTo-Json -Compress -Depth 5)
if (-not $report['ok']) { exit 1 }

# nixmox: message-signalled interrupts on every function of the passed-through GPU
# (the display and its HDMI audio). Line-based interrupts make a passed-through GPU
# stutter and crackle; the setting takes effect at the next boot.
param([switch]$CheckOnly)

# nixmox-prelude

$report = [ordered]@{ step = 'msi'; ok = $true; changed = $false; detail = ''; functions = @() }

# Emulated display adapters: virtio-gpu, QXL, bochs/std VGA, VMware, Hyper-V.
$emulated = @('VEN_1AF4', 'VEN_1B36', 'VEN_1234', 'VEN_15AD', 'VEN_1414')

function Get-Parent([string]$id) {
    return (Get-PnpDeviceProperty -InstanceId $id -KeyName 'DEVPKEY_Device_Parent').Data
}

# "PCI bus 1, device 0, function 1" -> "1/0": the functions of one card share bus and
# device. Vendor and parent alone match every Intel device on the root bus for an iGPU.
function Get-Slot([string]$id) {
    $where = (Get-PnpDeviceProperty -InstanceId $id -KeyName 'DEVPKEY_Device_LocationInfo' `
        -ErrorAction SilentlyContinue).Data
    $m = [regex]::Match([string]$where, 'PCI bus (\d+), device (\d+), function (\d+)')
    if (-not $m.Success) { return $null }
    return "$($m.Groups[1].Value)/$($m.Groups[2].Value)"
}

try {
    $displays = @(Get-PnpDevice -Class Display -PresentOnly -ErrorAction SilentlyContinue |
        Where-Object { $_.InstanceId -like 'PCI\*' })
    $gpus = @($displays | Where-Object {
        $vendor = ($_.InstanceId -split '\\')[1].Split('&')[0]
        $emulated -notcontains $vendor
    })
    $seen = @{}
    $functions = @()
    foreach ($gpu in $gpus) {
        $parent = Get-Parent $gpu.InstanceId
        $slot = Get-Slot $gpu.InstanceId
        # Functions of one card: the same bus and device under the same parent. Without a
        # location the GPU is set alone.
        $siblings = @($gpu)
        if ($slot) {
            $siblings = @(Get-PnpDevice -PresentOnly | Where-Object { $_.InstanceId -like 'PCI\*' })
        }
        foreach ($device in $siblings) {
            if ($seen.ContainsKey($device.InstanceId)) { continue }
            if ($slot -and ((Get-Slot $device.InstanceId) -ne $slot)) { continue }
            if ((Get-Parent $device.InstanceId) -ne $parent) { continue }
            $seen[$device.InstanceId] = $true
            $base = "HKLM:\SYSTEM\CurrentControlSet\Enum\$($device.InstanceId)\Device Parameters"
            $key = "$base\Interrupt Management\MessageSignaledInterruptProperties"
            $value = Get-ItemProperty -LiteralPath $key -Name MSISupported -ErrorAction SilentlyContinue
            $on = [bool]($value -and $value.MSISupported -eq 1)
            $functions += [ordered]@{
                id = $device.InstanceId; name = $device.FriendlyName; msi = $on; slot = $slot
            }
            if (-not $on -and -not $CheckOnly) {
                foreach ($sub in @("$base\Interrupt Management", $key)) {
                    if (-not (Test-Path -LiteralPath $sub)) { New-Item -Path $sub | Out-Null }
                }
                New-ItemProperty -LiteralPath $key -Name MSISupported -PropertyType DWord -Value 1 -Force |
                    Out-Null
                $report['changed'] = $true
            }
        }
    }
    $report['functions'] = $functions
    $report['detail'] = "$($functions.Count) GPU functions"
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

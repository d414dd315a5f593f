# nixmox update windows: health after the update (read-only).
# Prints one JSON line: each PCI display adapter's problem code (43: Windows
# stopped the device after it reported problems, the passthrough failure) and
# MSI mode, the Rust client's install state (Steam appmanifest_252490.acf
# StateFlags; 4 = fully installed) and the boot time.
# nixmox-prelude

function Get-SteamLibraries {
    $roots = New-Object System.Collections.ArrayList
    $steam = (Get-ItemProperty -Path 'HKLM:\SOFTWARE\WOW6432Node\Valve\Steam' -Name InstallPath -ErrorAction SilentlyContinue).InstallPath
    if (-not $steam) { $steam = 'C:\Program Files (x86)\Steam' }
    [void]$roots.Add($steam)
    $vdf = Join-Path $steam 'steamapps\libraryfolders.vdf'
    if (Test-Path -LiteralPath $vdf) {
        foreach ($m in [regex]::Matches((Get-Content -LiteralPath $vdf -Raw), '"path"\s+"([^"]+)"')) {
            $path = $m.Groups[1].Value -replace '\\\\', '\'
            if ($roots -notcontains $path) { [void]$roots.Add($path) }
        }
    }
    return $roots
}

try {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $boot = $os.LastBootUpTime.ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ',
        [Globalization.CultureInfo]::InvariantCulture)

    $gpus = New-Object System.Collections.ArrayList
    $display = Get-CimInstance -ClassName Win32_PnPEntity -Filter "PNPClass='Display'"
    foreach ($dev in $display) {
        if ($dev.PNPDeviceID -notlike 'PCI\*') { continue }
        $msiKey = 'HKLM:\SYSTEM\CurrentControlSet\Enum\' + $dev.PNPDeviceID + '\Device Parameters\Interrupt Management\MessageSignaledInterruptProperties'
        $msi = $null
        $props = Get-ItemProperty -Path $msiKey -Name MSISupported -ErrorAction SilentlyContinue
        if ($props) { $msi = ($props.MSISupported -eq 1) }
        [void]$gpus.Add([ordered]@{
            name = $dev.Name
            instance_id = $dev.PNPDeviceID
            status = $dev.Status
            problem_code = [int]$dev.ConfigManagerErrorCode
            msi = $msi
        })
    }

    $rust = [ordered]@{ installed = $false; state_flags = $null; manifest = $null }
    foreach ($library in (Get-SteamLibraries)) {
        $manifest = Join-Path $library 'steamapps\appmanifest_252490.acf'
        if (-not (Test-Path -LiteralPath $manifest)) { continue }
        $m = [regex]::Match((Get-Content -LiteralPath $manifest -Raw), '"StateFlags"\s+"(\d+)"')
        $flags = $null
        if ($m.Success) { $flags = [int]$m.Groups[1].Value }
        $rust = [ordered]@{ installed = ($flags -eq 4); state_flags = $flags; manifest = $manifest }
        break
    }

    Write-Report ([ordered]@{ ok = $true; boot_time = $boot; gpus = $gpus; rust = $rust })
    exit 0
} catch {
    Write-Report ([ordered]@{ ok = $false; error = $_.Exception.Message })
    exit 1
}

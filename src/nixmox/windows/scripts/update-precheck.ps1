# nixmox update windows: precheck (read-only).
# Prints one JSON line: OS build, last boot time (UTC), pending-reboot flags,
# Windows servicing processes, free space on C:, which of the given busy
# processes run, whether Steam is downloading, and PowerShell's language mode.
param([string]$BusyProcesses = '')
# nixmox-prelude

try {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $ubr = (Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\Windows NT\CurrentVersion').UBR
    $build = '{0}.{1}' -f $os.Version, $ubr
    # Invariant culture: with the current one ':' becomes the culture's time separator.
    $boot = $os.LastBootUpTime.ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ',
        [Globalization.CultureInfo]::InvariantCulture)

    $reasons = New-Object System.Collections.ArrayList
    if (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending') {
        [void]$reasons.Add('CBS RebootPending')
    }
    if (Test-Path 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired') {
        [void]$reasons.Add('WindowsUpdate RebootRequired')
    }
    # Information only: antivirus, browsers and drivers fill it, and it can survive
    # reboots, so counting it would hold every run or reboot every time.
    $sm = Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\Session Manager' -Name PendingFileRenameOperations -ErrorAction SilentlyContinue
    $renames = [bool]($sm -and $sm.PendingFileRenameOperations)
    try {
        if ((New-Object -ComObject Microsoft.Update.SystemInfo).RebootRequired) {
            [void]$reasons.Add('Microsoft.Update.SystemInfo RebootRequired')
        }
    } catch {
        # The Windows Update Agent is busy or absent: the registry flags still count.
    }

    $servicing = New-Object System.Collections.ArrayList
    foreach ($name in @('TiWorker', 'TrustedInstaller')) {
        if (Get-Process -Name $name -ErrorAction SilentlyContinue) { [void]$servicing.Add($name) }
    }

    $disk = Get-CimInstance -ClassName Win32_LogicalDisk -Filter "DeviceID='C:'"
    $freeGb = [math]::Round($disk.FreeSpace / 1073741824, 1)

    $busy = New-Object System.Collections.ArrayList
    foreach ($wanted in ($BusyProcesses -split ',')) {
        $wanted = $wanted.Trim()
        if (-not $wanted) { continue }
        $bare = $wanted -replace '\.exe$', ''
        if (Get-Process -Name $bare -ErrorAction SilentlyContinue) { [void]$busy.Add($wanted) }
    }

    # Steam marks an app it is downloading or updating with Updating=1 under the
    # logged-on user's hive (HKEY_USERS\SID\Software\Valve\Steam\Apps\APPID).
    $downloading = New-Object System.Collections.ArrayList
    foreach ($hive in (Get-ChildItem -Path 'Registry::HKEY_USERS' -ErrorAction SilentlyContinue)) {
        $apps = 'Registry::HKEY_USERS\' + $hive.PSChildName + '\Software\Valve\Steam\Apps'
        foreach ($app in (Get-ChildItem -Path $apps -ErrorAction SilentlyContinue)) {
            $updating = (Get-ItemProperty -Path $app.PSPath -Name Updating -ErrorAction SilentlyContinue).Updating
            if ($updating -eq 1) { [void]$downloading.Add($app.PSChildName) }
        }
    }

    Write-Report ([ordered]@{
        ok = $true
        build = $build
        boot_time = $boot
        reboot_pending = ($reasons.Count -gt 0)
        reboot_reasons = $reasons
        pending_file_renames = $renames
        servicing = $servicing
        free_gb = $freeGb
        busy = $busy
        steam_downloading = ($downloading.Count -gt 0)
        steam_apps_downloading = $downloading
        # ConstrainedLanguage under Smart App Control / App Control: COM objects fail.
        language_mode = [string]$ExecutionContext.SessionState.LanguageMode
    })
    exit 0
} catch {
    Write-Report ([ordered]@{ ok = $false; error = $_.Exception.Message })
    exit 1
}

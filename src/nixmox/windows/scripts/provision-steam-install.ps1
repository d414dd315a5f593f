# nixmox: run SteamSetup.exe /S and return once that installer has exited.
# Run straight through the agent, the installer may start Steam as SYSTEM, which
# inherits the agent's output pipes: the agent reports the command exited only once
# every holder of its pipes is gone, so the exec stays open for as long as Steam
# runs. Start-Process (ShellExecute) hands the installer no pipes, this script
# waits for the installer's own process only, then stops any Steam client that
# runs as SYSTEM (Steam belongs in the player's session: the logon task starts it).
param(
    [Parameter(Mandatory = $true)][string]$Installer,
    [int]$TimeoutSeconds = 1500
)

$ErrorActionPreference = 'Stop'

function Write-Report($report) {
    $json = ConvertTo-Json -InputObject $report -Compress -Depth 6
    # ASCII only, whatever the console code page: escape everything else.
    $json = [regex]::Replace($json, '[^\x20-\x7E]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
    Write-Output $json
}

$report = [ordered]@{
    step = 'steam-install'; ok = $true; changed = $false; detail = ''
    exit_code = $null; stopped = @()
}
try {
    $setup = Start-Process -FilePath $Installer -ArgumentList '/S' -PassThru -WindowStyle Hidden
    if (-not $setup.WaitForExit($TimeoutSeconds * 1000)) {
        throw "$Installer /S still runs after $TimeoutSeconds s"
    }
    $report['exit_code'] = [int]$setup.ExitCode
    $report['changed'] = $true
    $stopped = New-Object System.Collections.ArrayList
    $clients = @(Get-CimInstance -ClassName Win32_Process |
        Where-Object { @('steam.exe', 'steamwebhelper.exe') -contains $_.Name.ToLower() })
    foreach ($process in $clients) {
        $owner = Invoke-CimMethod -InputObject $process -MethodName GetOwner
        # SYSTEM only: a player's own Steam session is left alone.
        if ($owner.User -eq 'SYSTEM') {
            Stop-Process -Id $process.ProcessId -Force -ErrorAction SilentlyContinue
            [void]$stopped.Add([ordered]@{ name = [string]$process.Name; pid = [int]$process.ProcessId })
        }
    }
    $report['stopped'] = $stopped
    $report['detail'] = "$Installer /S exited with $($report['exit_code'])"
    if ($report['exit_code'] -ne 0) { $report['ok'] = $false }
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

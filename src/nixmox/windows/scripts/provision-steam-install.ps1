# nixmox: download SteamSetup.exe afresh, check Valve's signature, run it with /S and
# return once that installer has exited.
# The installer is downloaded under a name nixmox chose for this run, into nixmox's
# folder (SYSTEM and Administrators only), and runs only when Windows says its
# Authenticode signature is valid and the signer is one of $Signers ('|' between
# names). It is removed afterwards, whatever happened: nothing is ever reused.
# Run straight through the agent, the installer may start Steam as SYSTEM, which
# inherits the agent's output pipes: the agent reports the command exited only once
# every holder of its pipes is gone, so the exec stays open for as long as Steam
# runs. Start-Process (ShellExecute) hands the installer no pipes, this script
# waits for the installer's own process only, then stops any Steam client that
# runs as SYSTEM (Steam belongs in the player's session: the logon task starts it).
param(
    [Parameter(Mandatory = $true)][string]$Url,
    [Parameter(Mandatory = $true)][string]$Installer,
    [Parameter(Mandatory = $true)][string]$Signers,
    [int]$TimeoutSeconds = 1500
)

# nixmox-prelude

$ProgressPreference = 'SilentlyContinue'
$report = [ordered]@{
    step = 'steam-install'; ok = $true; changed = $false; detail = ''; stage = 'download'
    exit_code = $null; stopped = @(); signature = $null
}
try {
    if (Test-Path -LiteralPath $Installer) {
        throw "$Installer exists already: nixmox runs only an installer it has just downloaded"
    }
    [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor
        [Net.SecurityProtocolType]::Tls12
    try {
        Invoke-WebRequest -Uri $Url -OutFile $Installer -UseBasicParsing
    } catch {
        throw "$Url`: $($_.Exception.Message)"
    }
    $report['stage'] = 'verify'
    $signature = Get-Signature $Installer
    $report['signature'] = $signature
    if ($signature['status'] -ne 'Valid' -or -not (Test-Signer $signature['subject'])) {
        throw "$Url is not validly signed by $Signers (signature $($signature['status'])): not run"
    }
    $report['stage'] = 'install'
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
    $report['detail'] = "SteamSetup.exe /S exited with $($report['exit_code'])"
    if ($report['exit_code'] -ne 0) { $report['ok'] = $false }
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
} finally {
    Remove-Item -LiteralPath $Installer -Force -ErrorAction SilentlyContinue
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

# nixmox: is Steam installed, and is there a logon task that starts it? Checks only.
param(
    [string]$TaskName = 'nixmox-steam',
    [switch]$CheckOnly
)

# nixmox-prelude

$report = [ordered]@{
    step = 'steam'; ok = $true; changed = $false; detail = ''
    installed = $false; install_path = $null; task = $null
}
try {
    $path = $null
    $key = Get-ItemProperty -Path 'HKLM:\SOFTWARE\WOW6432Node\Valve\Steam' -ErrorAction SilentlyContinue
    if ($key -and $key.InstallPath) {
        $path = [string]$key.InstallPath
    } elseif (Test-Path -LiteralPath 'C:\Program Files (x86)\Steam\steam.exe') {
        $path = 'C:\Program Files (x86)\Steam'
    }
    if ($path -and (Test-Path -LiteralPath (Join-Path $path 'steam.exe'))) {
        $report['installed'] = $true
        $report['install_path'] = $path
    }
    $task = Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
    if ($task) {
        $action = @($task.Actions)[0]
        $report['task'] = [ordered]@{
            user = [string]$task.Principal.UserId
            logon_type = [string]$task.Principal.LogonType
            execute = [string]$action.Execute
            priority = [int]$task.Settings.Priority
        }
    }
    if ($report['installed']) {
        $report['detail'] = "Steam in $path"
    } else {
        $report['detail'] = 'Steam not installed'
    }
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

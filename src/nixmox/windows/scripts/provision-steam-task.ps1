# nixmox: a scheduled task that starts Steam at the user's logon, in the user's session.
# The guest agent runs as SYSTEM in session 0, where the Steam client must not run:
# the task's principal is the user with an interactive logon, never SYSTEM.
param(
    [Parameter(Mandatory = $true)][string]$User,
    [Parameter(Mandatory = $true)][string]$SteamExe,
    [string]$TaskName = 'nixmox-steam',
    [switch]$CheckOnly
)

$ErrorActionPreference = 'Stop'
$report = [ordered]@{ step = 'steam-task'; ok = $true; changed = $false; detail = '' }

function Test-SameUser([string]$a, [string]$b) {
    return ($a -split '\\')[-1] -eq ($b -split '\\')[-1]
}

try {
    $task = Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
    $fine = $false
    if ($task) {
        $action = @($task.Actions)[0]
        $fine = (Test-SameUser $task.Principal.UserId $User) -and
            ([string]$task.Principal.LogonType -eq 'Interactive') -and
            ($action.Execute -eq $SteamExe)
    }
    if ($fine) {
        $report['detail'] = "task $TaskName starts Steam for $User"
    } elseif ($CheckOnly) {
        $report['changed'] = $true
        $report['detail'] = "would register task $TaskName for $User"
    } else {
        $action = New-ScheduledTaskAction -Execute $SteamExe -Argument '-silent'
        $trigger = New-ScheduledTaskTrigger -AtLogOn -User $User
        $principal = New-ScheduledTaskPrincipal -UserId $User -LogonType Interactive -RunLevel Limited
        $settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
            -ExecutionTimeLimit ([TimeSpan]::Zero)
        Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger `
            -Principal $principal -Settings $settings -Force `
            -Description 'Starts Steam for the player at logon (nixmox)' | Out-Null
        $report['changed'] = $true
        $report['detail'] = "registered task $TaskName for $User"
    }
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
}
Write-Output ($report | ConvertTo-Json -Compress -Depth 5)
if (-not $report['ok']) { exit 1 }

# nixmox: a scheduled task that starts Steam at the user's logon, in the user's session.
# The guest agent runs as SYSTEM in session 0, where the Steam client must not run:
# the task's principal is the user with an interactive logon, never SYSTEM.
param(
    [Parameter(Mandatory = $true)][string]$User,
    [Parameter(Mandatory = $true)][string]$SteamExe,
    [string]$TaskName = 'nixmox-steam',
    [switch]$CheckOnly
)

# nixmox-prelude

$report = [ordered]@{ step = 'steam-task'; ok = $true; changed = $false; detail = '' }

function Test-SameUser([string]$a, [string]$b) {
    return ($a -split '\\')[-1] -eq ($b -split '\\')[-1]
}

# A bare name resolves to the computer's own account first when the computer is
# named like the user, and registering the task fails: qualify a local account.
function Get-QualifiedUser([string]$name) {
    if ($name.Contains('\') -or $name.Contains('@')) { return $name }
    return "$env:COMPUTERNAME\$name"
}

# Normal CPU, I/O and memory priority for Steam and the games it starts (the
# task default, 7, is below normal).
$priority = 4

try {
    $task = Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue
    $fine = $false
    if ($task) {
        $action = @($task.Actions)[0]
        $fine = (Test-SameUser $task.Principal.UserId $User) -and
            ([string]$task.Principal.LogonType -eq 'Interactive') -and
            ($action.Execute -eq $SteamExe) -and
            ($task.Settings.Priority -eq $priority)
    }
    if ($fine) {
        $report['detail'] = "task $TaskName starts Steam for $User"
    } elseif ($CheckOnly) {
        $report['changed'] = $true
        $report['detail'] = "would register task $TaskName for $User"
    } else {
        $account = Get-QualifiedUser $User
        $action = New-ScheduledTaskAction -Execute $SteamExe -Argument '-silent'
        $trigger = New-ScheduledTaskTrigger -AtLogOn -User $account
        $principal = New-ScheduledTaskPrincipal -UserId $account -LogonType Interactive -RunLevel Limited
        $settings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries `
            -ExecutionTimeLimit ([TimeSpan]::Zero) -Priority $priority
        Register-ScheduledTask -TaskName $TaskName -Action $action -Trigger $trigger `
            -Principal $principal -Settings $settings -Force `
            -Description 'Starts Steam for the player at logon (nixmox)' | Out-Null
        $report['changed'] = $true
        $report['detail'] = "registered task $TaskName for $account"
    }
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

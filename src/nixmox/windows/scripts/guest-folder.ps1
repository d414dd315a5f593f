# nixmox: its own folder in the guest, which only SYSTEM and Administrators may write.
# Run from the command line itself (-EncodedCommand), before anything is written there,
# with $Nixmox.Path set on the line above. A missing folder is created and given
# permissions for SYSTEM and Administrators only, protected from inheritance (icacls
# works in every PowerShell language mode). An existing one is left as it is: nixmox
# reads its owner and permissions (SDDL) from the report and decides whether to use it.
# nixmox-prelude
$ProgressPreference = 'SilentlyContinue'

$path = [string]$Nixmox.Path
$report = [ordered]@{
    ok = $true; path = $path; created = $false; directory = $false; link = $false
    sddl = ''; children = @(); detail = ''
}
try {
    if (-not (Test-Path -LiteralPath $path)) {
        New-Item -ItemType Directory -Path $path | Out-Null
        $report['created'] = $true
        # Grant first, then drop what ProgramData hands down (Users may create files there).
        & icacls.exe $path /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
        if ($LASTEXITCODE -ne 0) { throw "icacls $path /grant:r exited with $LASTEXITCODE" }
        & icacls.exe $path /inheritance:r | Out-Null
        if ($LASTEXITCODE -ne 0) { throw "icacls $path /inheritance:r exited with $LASTEXITCODE" }
        # Anything already in it was written by another account in the moment before.
        $report['children'] = @(Get-ChildItem -LiteralPath $path -Force | ForEach-Object { [string]$_.Name })
    }
    $item = Get-Item -LiteralPath $path -Force
    $report['directory'] = [bool]$item.PSIsContainer
    $report['link'] = ([string]$item.Attributes) -match 'ReparsePoint'
    $report['sddl'] = [string](Get-Acl -LiteralPath $path).Sddl
    $report['detail'] = "$path owner and permissions read"
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

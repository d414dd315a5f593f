# nixmox: steamcmd in a folder of its own, for the Rust dedicated server.
# Reports the folder (owner and permissions as SDDL) and steamcmd.exe's Authenticode
# signature: nixmox decides from them whether steamcmd may run as SYSTEM. With
# -CheckOnly, or when steamcmd.exe is there, that is all. Otherwise steamcmd.zip is
# downloaded afresh into $Stage (a new folder under nixmox's own, which only SYSTEM
# and Administrators may write), its steamcmd.exe must be validly signed by one of
# $Signers ('|' between names), and only then is it moved into $Dir, created for
# SYSTEM and Administrators only when missing.
param(
    [Parameter(Mandatory = $true)][string]$Dir,
    [Parameter(Mandatory = $true)][string]$Url,
    [string]$Stage = '',
    [string]$Signers = '',
    [switch]$CheckOnly
)

# nixmox-prelude

function Get-Folder([string]$path) {
    $item = Get-Item -LiteralPath $path -Force -ErrorAction SilentlyContinue
    if (-not $item) { return [ordered]@{ exists = $false } }
    return [ordered]@{
        exists = $true
        directory = [bool]$item.PSIsContainer
        link = (([string]$item.Attributes) -match 'ReparsePoint')
        sddl = [string](Get-Acl -LiteralPath $path).Sddl
    }
}

$ProgressPreference = 'SilentlyContinue'
$report = [ordered]@{
    step = 'steamcmd'; ok = $true; changed = $false; detail = ''; present = $false
    folder = $null; signature = $null
}
try {
    $exe = Join-Path $Dir 'steamcmd.exe'
    $report['folder'] = Get-Folder $Dir
    if (Test-Path -LiteralPath $exe) {
        $report['present'] = $true
        $report['signature'] = Get-Signature $exe
        $report['detail'] = "$exe present"
    } elseif ($CheckOnly) {
        $report['changed'] = $true
        $report['detail'] = "would download $Url into $Dir"
    } else {
        if (-not $Stage -or -not $Signers) { throw 'installing steamcmd needs -Stage and -Signers' }
        try {
            New-Item -ItemType Directory -Path $Stage | Out-Null
            [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor
                [Net.SecurityProtocolType]::Tls12
            $zip = Join-Path $Stage 'steamcmd.zip'
            $unpacked = Join-Path $Stage 'unpacked'
            try {
                Invoke-WebRequest -Uri $Url -OutFile $zip -UseBasicParsing
            } catch {
                throw "$Url`: $($_.Exception.Message)"
            }
            Expand-Archive -LiteralPath $zip -DestinationPath $unpacked -Force
            $signature = Get-Signature (Join-Path $unpacked 'steamcmd.exe')
            $report['signature'] = $signature
            if ($signature['status'] -ne 'Valid' -or -not (Test-Signer $signature['subject'])) {
                throw "steamcmd.exe from $Url is not validly signed by $Signers (signature $($signature['status'])): not installed"
            }
            if (-not (Test-Path -LiteralPath $Dir)) {
                New-Item -ItemType Directory -Path $Dir | Out-Null
                & icacls.exe $Dir /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
                if ($LASTEXITCODE -ne 0) { throw "icacls $Dir /grant:r exited with $LASTEXITCODE" }
                & icacls.exe $Dir /inheritance:r | Out-Null
                if ($LASTEXITCODE -ne 0) { throw "icacls $Dir /inheritance:r exited with $LASTEXITCODE" }
            }
            Move-Item -Path (Join-Path $unpacked '*') -Destination $Dir
        } finally {
            Remove-Item -LiteralPath $Stage -Recurse -Force -ErrorAction SilentlyContinue
        }
        $report['folder'] = Get-Folder $Dir
        $report['signature'] = Get-Signature $exe
        $report['present'] = $true
        $report['changed'] = $true
        $report['detail'] = "unpacked steamcmd into $Dir"
    }
} catch {
    $report['ok'] = $false
    $report['detail'] = $_.Exception.Message
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

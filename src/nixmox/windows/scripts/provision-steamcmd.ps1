# nixmox: steamcmd unpacked in a folder of its own, for the Rust dedicated server.
param(
    [Parameter(Mandatory = $true)][string]$Dir,
    [Parameter(Mandatory = $true)][string]$Url,
    [switch]$CheckOnly
)

$ErrorActionPreference = 'Stop'

function Write-Report($report) {
    $json = ConvertTo-Json -InputObject $report -Compress -Depth 6
    # ASCII only, whatever the console code page: escape everything else.
    $json = [regex]::Replace($json, '[^\x20-\x7E]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
    Write-Output $json
}

$ProgressPreference = 'SilentlyContinue'
$report = [ordered]@{ step = 'steamcmd'; ok = $true; changed = $false; detail = ''; present = $false }
try {
    $exe = Join-Path $Dir 'steamcmd.exe'
    if (Test-Path -LiteralPath $exe) {
        $report['present'] = $true
        $report['detail'] = "$exe present"
    } elseif ($CheckOnly) {
        $report['changed'] = $true
        $report['detail'] = "would download $Url into $Dir"
    } else {
        New-Item -ItemType Directory -Path $Dir -Force | Out-Null
        [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor
            [Net.SecurityProtocolType]::Tls12
        $zip = Join-Path $Dir 'steamcmd.zip'
        Invoke-WebRequest -Uri $Url -OutFile $zip -UseBasicParsing
        Expand-Archive -LiteralPath $zip -DestinationPath $Dir -Force
        Remove-Item -LiteralPath $zip
        $report['present'] = $true
        $report['changed'] = $true
        $report['detail'] = "unpacked steamcmd into $Dir"
    }
} catch {
    $report['ok'] = $false
    $report['detail'] = "$Url`: $($_.Exception.Message)"
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

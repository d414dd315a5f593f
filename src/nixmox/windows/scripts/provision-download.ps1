# nixmox: download a file inside the guest unless it is there already.
param(
    [Parameter(Mandatory = $true)][string]$Url,
    [Parameter(Mandatory = $true)][string]$OutFile,
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
$report = [ordered]@{ step = 'download'; ok = $true; changed = $false; detail = '' }
try {
    $have = Get-Item -LiteralPath $OutFile -ErrorAction SilentlyContinue
    if ($have -and $have.Length -gt 0) {
        $report['detail'] = "$OutFile already there ($($have.Length) bytes)"
    } elseif ($CheckOnly) {
        $report['changed'] = $true
        $report['detail'] = "would download $Url"
    } else {
        [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor
            [Net.SecurityProtocolType]::Tls12
        # Into a side file first: an interrupted download never looks complete.
        $part = "$OutFile.part"
        Invoke-WebRequest -Uri $Url -OutFile $part -UseBasicParsing
        Move-Item -LiteralPath $part -Destination $OutFile -Force
        $report['changed'] = $true
        $report['bytes'] = (Get-Item -LiteralPath $OutFile).Length
        $report['detail'] = "downloaded $Url"
    }
} catch {
    $report['ok'] = $false
    $report['detail'] = "$Url`: $($_.Exception.Message)"
}
Write-Report $report
if (-not $report['ok']) { exit 1 }

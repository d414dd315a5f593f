# nixmox: what its packaged scripts share. nixmox puts this text in place of the prelude
# line each script holds after its param block (which must come first) whenever it
# writes or runs the script, so each script is whole on its own in the guest and the
# SHA-256 run-verified.ps1 checks is that of the whole text. Functions here read the
# script's own parameters where they name them ($Signers, $IncludeOptional).
$ErrorActionPreference = 'Stop'

# The one JSON line a script reports with.
function Write-Report($report) {
    $json = ConvertTo-Json -InputObject $report -Compress -Depth 6
    # ASCII only, whatever the console code page: escape everything else.
    $json = [regex]::Replace($json, '[^\x20-\x7E]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
    Write-Output $json
}

# The signer's CN and O against the accepted names.
function Test-Signer([string]$subject) {
    $accepted = $Signers -split '\|'
    foreach ($m in [regex]::Matches($subject, '(?:^|,)\s*(?:CN|O)=("(?:[^"]|"")*"|[^,]*)')) {
        $name = $m.Groups[1].Value.Trim()
        if ($name.StartsWith('"')) { $name = $name.Substring(1, $name.Length - 2).Replace('""', '"') }
        if ($accepted -contains $name) { return $true }
    }
    return $false
}

function Get-Signature([string]$file) {
    $sig = Get-AuthenticodeSignature -LiteralPath $file
    $subject = ''
    if ($sig.SignerCertificate) { $subject = [string]$sig.SignerCertificate.Subject }
    return [ordered]@{ status = [string]$sig.Status; subject = $subject }
}

# The updates Windows Update installs on its own: optional ones (BrowseOnly,
# e.g. preview cumulative updates) only with -IncludeOptional.
function Get-Criteria {
    $criteria = "IsInstalled=0 and Type='Software' and IsHidden=0"
    if (-not $IncludeOptional) { $criteria += ' and BrowseOnly=0' }
    return $criteria
}

function Get-Summary($u, $reason) {
    $kbs = @($u.KBArticleIDs | ForEach-Object { 'KB' + $_ })
    return [ordered]@{ kb = ($kbs -join ','); title = $u.Title; reason = $reason }
}

# nixmox update windows: what Windows Update offers (read-only).
# Prints one JSON line with every applicable software update not yet installed,
# and those left alone because they may ask for input (nobody answers in session 0).
param([switch]$IncludeOptional)
# nixmox-prelude

try {
    $session = New-Object -ComObject Microsoft.Update.Session
    $session.ClientApplicationID = 'nixmox'
    $searcher = $session.CreateUpdateSearcher()
    $found = $searcher.Search((Get-Criteria))
    $updates = New-Object System.Collections.ArrayList
    $skipped = New-Object System.Collections.ArrayList
    foreach ($u in $found.Updates) {
        if ($u.InstallationBehavior.CanRequestUserInput) {
            [void]$skipped.Add((Get-Summary $u 'may ask for input'))
            continue
        }
        $kbs = @($u.KBArticleIDs | ForEach-Object { 'KB' + $_ })
        [void]$updates.Add([ordered]@{
            kb = ($kbs -join ',')
            title = $u.Title
            size_mb = [math]::Round($u.MaxDownloadSize / 1048576, 1)
            reboot = ($u.InstallationBehavior.RebootBehavior -ne 0)
            id = $u.Identity.UpdateID
        })
    }
    Write-Report ([ordered]@{ ok = $true; count = $updates.Count; updates = $updates; skipped = $skipped })
    exit 0
} catch {
    Write-Report ([ordered]@{ ok = $false; error = $_.Exception.Message })
    exit 1
}

# nixmox update windows: download and install what the scan finds.
# Prints one JSON line: the installer's ResultCode (2 succeeded, 3 succeeded
# with errors, 4 failed, 5 aborted), HResult, RebootRequired and each update's
# own ResultCode. Never reboots: nixmox decides that by the guest's policy.
# Installs what update-scan.ps1 lists, with the same choice (-IncludeOptional).
param([switch]$IncludeOptional)
# nixmox-prelude

try {
    $session = New-Object -ComObject Microsoft.Update.Session
    $session.ClientApplicationID = 'nixmox'
    $searcher = $session.CreateUpdateSearcher()
    $found = $searcher.Search((Get-Criteria))
    $wanted = New-Object -ComObject Microsoft.Update.UpdateColl
    $skipped = New-Object System.Collections.ArrayList
    foreach ($u in $found.Updates) {
        if ($u.InstallationBehavior.CanRequestUserInput) {
            [void]$skipped.Add((Get-Summary $u 'may ask for input'))
            continue
        }
        if (-not $u.EulaAccepted) { $u.AcceptEula() }
        [void]$wanted.Add($u)
    }
    if ($wanted.Count -eq 0) {
        Write-Report ([ordered]@{ ok = $true; stage = 'install'; result_code = 2; hresult = 0; reboot_required = $false; updates = @(); skipped = $skipped })
        exit 0
    }

    $downloader = $session.CreateUpdateDownloader()
    $downloader.Updates = $wanted
    $download = $downloader.Download()
    $ready = New-Object -ComObject Microsoft.Update.UpdateColl
    foreach ($u in $wanted) { if ($u.IsDownloaded) { [void]$ready.Add($u) } }
    if ($ready.Count -eq 0) {
        Write-Report ([ordered]@{ ok = $true; stage = 'download'; result_code = [int]$download.ResultCode; hresult = [int]$download.HResult; reboot_required = $false; updates = @(); skipped = $skipped })
        exit 0
    }

    $installer = $session.CreateUpdateInstaller()
    $installer.AllowSourcePrompts = $false
    $installer.Updates = $ready
    $result = $installer.Install()
    $each = New-Object System.Collections.ArrayList
    for ($i = 0; $i -lt $ready.Count; $i++) {
        $u = $ready.Item($i)
        $kbs = @($u.KBArticleIDs | ForEach-Object { 'KB' + $_ })
        [void]$each.Add([ordered]@{
            kb = ($kbs -join ',')
            title = $u.Title
            result_code = [int]$result.GetUpdateResult($i).ResultCode
        })
    }
    Write-Report ([ordered]@{
        ok = $true
        stage = 'install'
        result_code = [int]$result.ResultCode
        hresult = [int]$result.HResult
        reboot_required = [bool]$result.RebootRequired
        updates = $each
        skipped = $skipped
    })
    exit 0
} catch {
    Write-Report ([ordered]@{ ok = $false; error = $_.Exception.Message })
    exit 1
}

$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: inventory -- everything the console shows about this host, in one call.
# Arguments: none besides op and v. Helpers come from _prelude.ps1.

$vhdCache = @{}
$vhdErrors = @{}

function Get-HvtuiChain {
    # The disk chain from Path down to the base disk, one Get-VHD per level (cached: checkpoint
    # chains share their ancestors). An unreadable file ends the chain: the last link then names
    # a parent_path that is missing, which is exactly what the console must show. Why Get-VHD
    # failed is kept in $vhdErrors (see Get-HvtuiChainBreak).
    param([string]$Path)
    $seen = @{}
    $next = $Path
    while ($next -and -not $seen.ContainsKey($next.ToLowerInvariant())) {
        $key = $next.ToLowerInvariant()
        $seen[$key] = $true
        if (-not $vhdCache.ContainsKey($key)) {
            $link = $null
            try {
                $vhd = Hyper-V\Get-VHD -Path $next
                $parentPath = $null
                if ($vhd.ParentPath) {
                    $parentPath = [string]$vhd.ParentPath
                }
                $link = [ordered]@{
                    path = [string]$vhd.Path
                    vhd_type = Get-HvtuiName -Value $vhd.VhdType
                    file_size = [int64]$vhd.FileSize
                    size = [int64]$vhd.Size
                    parent_path = $parentPath
                }
            } catch {
                $link = $null
                $vhdErrors[$key] = [string]$_.Exception.Message
            }
            $vhdCache[$key] = $link
        }
        $link = $vhdCache[$key]
        if ($null -eq $link) {
            break
        }
        $link
        $next = $link.parent_path
    }
}

function Get-HvtuiChainBreak {
    # The file at which Get-HvtuiChain stopped because Get-VHD failed on it (the disk itself when
    # the chain is empty, else the last link's parent), or $null when the chain was read whole.
    param([string]$Path, $Chain)
    $stop = $Path
    $links = @($Chain)
    if ($links.Count -gt 0) {
        $stop = $links[$links.Count - 1].parent_path
    }
    if ($stop -and $vhdErrors.ContainsKey($stop.ToLowerInvariant())) {
        return [string]$stop
    }
    return $null
}

function Get-HvtuiVolumes {
    foreach ($volume in @(Get-CimInstance -ClassName Win32_Volume -Filter 'DriveType = 3')) {
        $name = [string]$volume.Name
        if (-not $name -or $name.StartsWith('\\?\') -or -not $volume.Capacity) {
            continue
        }
        [ordered]@{
            path = $name
            label = [string]$volume.Label
            size = [int64]$volume.Capacity
            free = [int64]$volume.FreeSpace
        }
    }
}

$exitCode = Invoke-HvtuiOperation -Body {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    $facts = [ordered]@{
        name = [string]$env:COMPUTERNAME
        os = ([string]$os.Caption).Trim()
        build = [string]$os.BuildNumber
        now = (Get-Date).ToUniversalTime().ToString('o')
        logical_processors = [int]$computer.NumberOfLogicalProcessors
        memory_bytes = [int64]$computer.TotalPhysicalMemory
        volumes = @(Get-HvtuiVolumes)
    }

    # Disk files that belong to a VM or checkpoint here (never stray), and the folders in which a
    # chain stopped at an unreadable file: its parents are unknown and may lie there, so no file
    # in such a folder is called stray.
    $known = @{}
    $unsure = @{}
    $pending = New-Object -TypeName System.Collections.Generic.List[object]
    $rows = New-Object -TypeName System.Collections.Generic.List[object]
    foreach ($vm in @(Hyper-V\Get-VM)) {
        $folders = [ordered]@{}
        if ($vm.Path) {
            $folders[$vm.Path.ToLowerInvariant()] = [string]$vm.Path
            $vhdFolder = Join-Path -Path $vm.Path -ChildPath 'Virtual Hard Disks'
            $folders[$vhdFolder.ToLowerInvariant()] = $vhdFolder
        }

        $snapshots = @(Get-HvtuiCheckpoints -VM $vm | Sort-Object -Property CreationTime)
        $checkpoints = @(foreach ($snapshot in $snapshots) { ConvertTo-HvtuiCheckpoint -Snapshot $snapshot })
        foreach ($snapshot in $snapshots) {
            foreach ($drive in @($snapshot.HardDrives)) {
                if ($drive.Path -and $null -eq $drive.DiskNumber) {
                    $known[$drive.Path.ToLowerInvariant()] = $true
                    $chain = @(Get-HvtuiChain -Path $drive.Path)
                    foreach ($link in $chain) {
                        $known[$link.path.ToLowerInvariant()] = $true
                        if ($link.parent_path) {
                            $known[$link.parent_path.ToLowerInvariant()] = $true
                        }
                        $folder = Split-Path -Path $link.path -Parent
                        $folders[$folder.ToLowerInvariant()] = $folder
                    }
                    $broken = Get-HvtuiChainBreak -Path $drive.Path -Chain $chain
                    if ($broken) {
                        $brokenFolder = [string](Split-Path -Path $broken -Parent)
                        $unsure[$brokenFolder.TrimEnd('\').ToLowerInvariant()] = $true
                    }
                }
            }
        }

        $disks = New-Object -TypeName System.Collections.Generic.List[object]
        foreach ($drive in @(Hyper-V\Get-VMHardDiskDrive -VM $vm)) {
            $chain = @()
            $diskError = $null
            if ($drive.Path -and $null -eq $drive.DiskNumber) {
                # The file the VM writes to is its own, even when Get-VHD cannot read it.
                $known[$drive.Path.ToLowerInvariant()] = $true
                $chain = @(Get-HvtuiChain -Path $drive.Path)
                $broken = Get-HvtuiChainBreak -Path $drive.Path -Chain $chain
                if ($broken) {
                    $brokenFolder = [string](Split-Path -Path $broken -Parent)
                    $unsure[$brokenFolder.TrimEnd('\').ToLowerInvariant()] = $true
                    $diskError = 'Get-VHD cannot read {0}: {1} (stray disk files in {2} are not listed until it can)' -f $broken, $vhdErrors[$broken.ToLowerInvariant()], $brokenFolder
                }
            }
            foreach ($link in $chain) {
                $known[$link.path.ToLowerInvariant()] = $true
                if ($link.parent_path) {
                    $known[$link.parent_path.ToLowerInvariant()] = $true
                }
                $folder = Split-Path -Path $link.path -Parent
                $folders[$folder.ToLowerInvariant()] = $folder
            }
            $disks.Add([ordered]@{
                controller = Get-HvtuiName -Value $drive.ControllerType
                controller_number = [int]$drive.ControllerNumber
                controller_location = [int]$drive.ControllerLocation
                path = [string]$drive.Path
                chain = $chain
                error = $diskError
            })
        }

        $parentCheckpointId = $null
        if ($vm.ParentSnapshotId) {
            $parentCheckpointId = $vm.ParentSnapshotId.ToString()
        }
        $uptime = 0
        if ($vm.Uptime) {
            $uptime = [int64][math]::Floor($vm.Uptime.TotalSeconds)
        }
        $row = [ordered]@{
            id = $vm.Id.ToString()
            name = [string]$vm.Name
            state = Get-HvtuiName -Value $vm.State
            status = [string]$vm.Status
            cpu_usage = [int]$vm.CPUUsage
            memory_assigned = [int64]$vm.MemoryAssigned
            uptime_seconds = $uptime
            heartbeat = Get-HvtuiName -Value $vm.Heartbeat
            generation = [int]$vm.Generation
            version = [string]$vm.Version
            checkpoint_type = Get-HvtuiName -Value $vm.CheckpointType
            is_clustered = [bool]$vm.IsClustered
            path = [string]$vm.Path
            checkpoint_path = [string]$vm.SnapshotFileLocation
            parent_checkpoint_id = $parentCheckpointId
            checkpoints = $checkpoints
            disks = @($disks)
            stray_disk_files = @()
        }
        $rows.Add($row)
        $pending.Add([ordered]@{ row = $row; folders = @($folders.Values) })
    }

    # Stray disk files: .vhdx/.avhdx in a VM's folders that belong to no chain of any VM or
    # checkpoint on this host. A folder shared by several VMs reports each file once; a folder in
    # $unsure reports none.
    $claimed = @{}
    foreach ($entry in $pending) {
        $strays = New-Object -TypeName System.Collections.Generic.List[string]
        foreach ($folder in $entry.folders) {
            if ($unsure.ContainsKey($folder.TrimEnd('\').ToLowerInvariant())) {
                continue
            }
            if (-not (Test-Path -LiteralPath $folder -PathType Container)) {
                continue
            }
            foreach ($file in @(Get-ChildItem -LiteralPath $folder -File -ErrorAction SilentlyContinue)) {
                $extension = $file.Extension.ToLowerInvariant()
                if ($extension -ne '.vhdx' -and $extension -ne '.avhdx') {
                    continue
                }
                $key = $file.FullName.ToLowerInvariant()
                if ($known.ContainsKey($key) -or $claimed.ContainsKey($key)) {
                    continue
                }
                $claimed[$key] = $true
                $strays.Add($file.FullName)
            }
        }
        $entry.row['stray_disk_files'] = @($strays)
    }

    [ordered]@{
        ok = $true
        host = $facts
        vms = @($rows)
    }
}
exit $exitCode

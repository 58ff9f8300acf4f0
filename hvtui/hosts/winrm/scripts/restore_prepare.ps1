$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue'
# op: restore.prepare
# Arguments: folder (a host-local folder the restore writes into over SMB), bytes (what the
# restore writes). Helpers come from _prelude.ps1.
# Refuses with kind space, before the folder is created, when bytes does not fit on the
# folder's volume with 10% to spare; creates the folder (idempotent) and answers the free space.

$exitCode = Invoke-HvtuiOperation -Body {
    if ([int]$HvtuiArgs.v -ne 1) {
        Stop-Hvtui -Message ('This script speaks wire version 1, not {0}' -f $HvtuiArgs.v) -ErrorId 'HvtuiKind-argument' -Category InvalidArgument
    }
    $folder = [string]$HvtuiArgs.folder
    $bytes = [long]$HvtuiArgs.bytes
    if (-not [System.IO.Path]::IsPathRooted($folder) -or $folder.StartsWith('\\') -or $bytes -lt 0) {
        Stop-Hvtui -Message ('restore.prepare needs a local folder and a byte count, not {0} and {1}' -f $folder, $bytes) -ErrorId 'HvtuiKind-argument' -Category InvalidArgument
    }
    $root = [System.IO.Path]::GetPathRoot($folder)
    if (-not [System.IO.Directory]::Exists($root)) {
        Stop-Hvtui -Message ('The volume {0} does not exist on this host' -f $root) -ErrorId 'HvtuiKind-not-found' -Category ObjectNotFound
    }
    $drive = New-Object -TypeName System.IO.DriveInfo -ArgumentList $root
    $free = [long]$drive.AvailableFreeSpace
    $needed = [long][Math]::Ceiling($bytes * 1.1)
    if ($needed -gt $free) {
        $message = 'Not enough free space on {0}: {1} bytes to write (with 10% to spare {2}), {3} free' -f $root, $bytes, $needed, $free
        Stop-Hvtui -Message $message -ErrorId 'HvtuiKind-space' -Category LimitsExceeded
    }
    $null = [System.IO.Directory]::CreateDirectory($folder)
    [ordered]@{
        ok = $true
        free = $free
    }
}
exit $exitCode

"""The wire contract's enums: integer values trusted only where stable across Windows versions (hyperv.md §2).

Names pass as sent (``.ToString()`` is authoritative); PowerShell 5.1 sometimes sends the
integer instead, which these maps read.
"""

from __future__ import annotations

VM_STATE_BY_INT: dict[int, str] = {
    1: "Other",
    2: "Running",
    3: "Off",
    4: "Stopping",
    6: "Saved",
    9: "Paused",
    10: "Starting",
    11: "Reset",
    32773: "Saving",
    32776: "Pausing",
    32777: "Resuming",
    32779: "FastSaved",
    32780: "FastSaving",
    32781: "ForceShutdown",
    32782: "ForceReboot",
}
SNAPSHOT_TYPE_BY_INT: dict[int, str] = {
    0: "Standard",
    1: "Recovery",
    2: "Planned",
    5: "Missing",
    6: "Replica",
    7: "AppConsistentReplica",
    8: "SyncedReplica",
}
VM_CHECKPOINT_TYPE_BY_INT: dict[int, str] = {2: "Disabled", 3: "Production", 4: "ProductionOnly", 5: "Standard"}
VHD_TYPE_BY_INT: dict[int, str] = {0: "Unknown", 2: "Fixed", 3: "Dynamic", 4: "Differencing"}
HEARTBEAT_BY_INT: dict[int, str] = {
    0: "Unknown",
    1: "Disabled",
    2: "NoContact",
    3: "Error",
    4: "LostCommunication",
    5: "OkApplicationsUnknown",
    6: "OkApplicationsHealthy",
    7: "OkApplicationsCritical",
    8: "Paused",
}
CONTROLLER_BY_INT: dict[int, str] = {0: "IDE", 1: "SCSI", 2: "PMEM"}

"""The embedded lab: simulated Hyper-V hosts that keep real VM files on disk.

Modules:

- ``disk``   the virtual disk file format (sparse 1 MiB blocks, differencing chains),
             chain reading/writing, merging, ``read_logical``/``logical_digest``;
- ``state``  the per-host state file (``host.json``, atomic rewrite), the host lock and
             per-VM operation locks (fcntl), the change-tracking logs (``.rct``);
- ``guest``  deterministic guest activity (one tick per simulated minute) and fast
             deterministic data for estates;
- ``host``   ``LabHost``: inventory, checkpoint create/apply/remove/rename, the knobs
             tests use (``set_volume``, ``add_stray_file``, ``simulate_failed_merge``,
             ``write_guest_data``, ``read_disk`` ...);
- ``backup`` ``BackupSource`` (a Recovery checkpoint) and ``RestoreTarget`` (new VM or
             in place);
- ``estate`` the demo, bench and scale profiles and ``init_lab``/``ensure_lab``/
             ``reset_lab``/``lab_status``/``lab_host_names``.

On disk::

    <lab dir>/lab.json                          profile, seed, size, creation time
    <lab dir>/<host>/host.json                  VM registry, checkpoint tree, file graph
    <lab dir>/<host>/Virtual Machines/<vm>/     <VM GUID>.vmcx, <VM GUID>.vmrs (running,
                                                saved, paused), <vm>.vhdx, <vm>_disk1.vhdx,
                                                <vm>_<GUID>.avhdx
    <lab dir>/<host>/.rct/ .locks/ .staging/    change logs, operation locks, restores

All paths inside the state are relative, so a lab directory can be copied or moved.
"""

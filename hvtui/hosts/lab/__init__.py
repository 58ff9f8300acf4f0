"""The embedded lab: simulated Hyper-V hosts that keep real VM files on disk.

Modules, bottom to top (each imports only modules above it in this list):

- ``disk``        the VM disks: genuine VHDX (the format is ``hvtui.hosts.vhdx``), dynamic
                  bases and differencing chains with sector bitmaps, 1 MiB blocks; chain
                  reading/writing, merging, ``read_logical``/``logical_digest``;
- ``state``       the per-host state file (``host.json``, atomic rewrite), the host lock and
                  per-VM operation locks (fcntl), the change-tracking logs (``.rct``), and
                  ``lab_host_names``;
- ``guest``       deterministic guest activity (one tick per simulated minute) and fast
                  deterministic data for estates;
- ``records``     the VM and checkpoint records: names, times, ids, the .vmcx they give;
- ``merge``       removing checkpoints: planning the merges, running and committing them;
- ``store``       ``LabStore``: one host's state transactions, record look-ups, locks, VM
                  files (config, runtime state, change-tracked disk writes), crash recovery;
- ``inventory``   ``InventoryReader``: the host's VMs and checkpoints as the model shows them;
- ``checkpoints`` create/apply/rename/remove checkpoints;
- ``vms``         adding VMs, power state, guest writes, and the knobs tests use
                  (``set_volume``, ``add_stray_file``, ``simulate_failed_merge`` ...);
- ``backup``      ``BackupSource`` (a Recovery checkpoint);
- ``restore``     ``RestoreTarget`` (new VM or in place);
- ``host``        ``LabHost``, the ``Host`` facade over all of the above;
- ``profiles``    the demo, bench and scale estates;
- ``estate``      the whole lab: ``init_lab``/``ensure_lab``/``reset_lab``/``lab_status``/
                  ``lab_host_names``, leftovers of killed builds.

On disk::

    <lab dir>/lab.json                          profile, seed, size, creation time
    <lab dir>/<host>/host.json                  VM registry, checkpoint tree, file graph
    <lab dir>/<host>/Virtual Machines/<vm>/     <VM GUID>.vmcx, <VM GUID>.vmrs (running,
                                                saved, paused), <vm>.vhdx, <vm>_disk1.vhdx,
                                                <vm>_<GUID>.avhdx
    <lab dir>/<host>/.rct/ .locks/ .staging/    change logs, operation locks, restores

All paths inside the state are relative, so a lab directory can be copied or moved.
"""

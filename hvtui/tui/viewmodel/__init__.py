"""What the console shows, computed from the inventory and the findings, without Textual.

Everything here is plain data and runs in the refresh worker thread: the UI thread only
diffs the prepared rows against what the table shows.  Cells carry display text (via
humanize) and separate sort keys, so "9 days" sorts below "10 days" and "900 MiB" below
"1.2 GiB".

- ``format``: ages, sizes, times, file names, the default checkpoint name;
- ``cells``: table cells, the palette that styles them, column specs;
- ``vm_rows``: the VM table's rows (sort, filter, widths);
- ``finding_rows``: the findings table's rows;
- ``checkpoint_files``: which files each checkpoint of a VM started;
- ``snapshot``: one refresh's worth of all of it (``build_snapshot``).
"""

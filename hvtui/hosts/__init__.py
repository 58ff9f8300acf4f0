"""Host backends (the lab and WinRM) behind one interface, ``hvtui.hosts.base.Host``."""

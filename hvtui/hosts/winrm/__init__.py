"""Real Hyper-V hosts over WinRM (pywinrm's low-level Protocol, one shell per call slot)."""

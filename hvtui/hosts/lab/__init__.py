"""The embedded lab: simulated Hyper-V hosts that keep real VM files on disk."""

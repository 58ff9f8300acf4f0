"""Backup schedules (issue 22): what is due (``due``), the journal of runs (``journal``), and
running them through the job manager (``runner``); ``hvtui schedule`` and the console's
``:schedules`` view reach them through ``Core.schedules``."""

"""The transfer engine and backup repository (format: docs/repository-format.md).

- ``repository``: open/create a repository, points, commit; ``store``: chunk objects;
  ``manifest``: restore point documents and safe paths; ``locks``: repository and VM locks.
- ``backup``, ``restore``, ``verify``, ``prune``: the operations, each blocking, with a
  progress callback and a cancel token.  Callers above the engine use ``hvtui.backups``.
"""

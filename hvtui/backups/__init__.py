"""The backup service (``service.Backups``) and what it lists (``points``); see ``service``.

- ``repositories``: which repositories exist (configured, or the default one).
- ``points``: restore points and damaged manifests, and the listing cache.
- ``guard``: read-only refusal and audit entries.
- ``service``: ``Backups``, the backup/restore/verify/prune operations.
"""

from hvtui.backups.points import DamagedManifest, PointInfo, PointListing
from hvtui.backups.repositories import RepositoryList
from hvtui.backups.service import Backups
from hvtui.model import BACKUP_MODES

__all__ = ["BACKUP_MODES", "Backups", "DamagedManifest", "PointInfo", "PointListing", "RepositoryList"]

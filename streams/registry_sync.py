"""The registry reaches workers on the compacted topic ``lec.registry``: see :mod:`lec.registry.view`.

Kept as the streams-side name of the one implementation (``lec streams publish-registry`` and the
worker's follower) so existing imports keep working.
"""

from lec.registry.view import MAX_SNAPSHOT_BYTES, SNAPSHOT_KEY, RegistryFollower, publish

__all__ = ["MAX_SNAPSHOT_BYTES", "SNAPSHOT_KEY", "RegistryFollower", "publish"]

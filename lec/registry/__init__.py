"""Registry of communities, members, suppliers, devices and flows (seed tables 6-26)."""

from lec.registry.community_file import CommunityFile, parse_community_text, read_community_file
from lec.registry.secrets import MissingSecretError, SecretStore
from lec.registry.snapshot import (
    ACCOUNT_CONSUMPTION,
    ACCOUNT_NONE,
    ACCOUNT_PRODUCTION,
    Community,
    Device,
    Flow,
    Member,
    RegistrySnapshot,
    Supplier,
)
from lec.registry.store import Registry, open_registry

__all__ = [
    "ACCOUNT_CONSUMPTION", "ACCOUNT_NONE", "ACCOUNT_PRODUCTION", "Community", "CommunityFile", "Device", "Flow",
    "Member", "MissingSecretError", "Registry", "RegistrySnapshot", "SecretStore", "Supplier", "open_registry",
    "parse_community_text", "read_community_file",
]

"""Identifiers and salts of oracle.md §2 and §4."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from eth_abi import encode

from oracle.merkle import keccak


def community_id_hash(community_id: str) -> bytes:
    """``communityId`` (bytes32) = keccak256(utf8(community_id))."""
    return keccak(community_id.encode("utf-8"))


@lru_cache(maxsize=65536)  # a device's key never changes; abi-encoding strings is the slow part
def device_key(community_id: str, supplier_id: str, device_id: str, flow_id: str) -> bytes:
    """``deviceKey`` = keccak256(abi.encode(string community_id, supplier_id, device_id, flow_id))."""
    return keccak(encode(["string", "string", "string", "string"], [community_id, supplier_id, device_id, flow_id]))


def salt(device_secret: bytes, key: bytes, qh: int) -> bytes:
    """``salt`` = HMAC-SHA256(key = device secret, msg = deviceKey || uint64_be(qh)). Never log it."""
    if len(key) != 32:
        raise ValueError("deviceKey must be 32 bytes")
    return hmac.new(device_secret, key + qh.to_bytes(8, "big"), hashlib.sha256).digest()

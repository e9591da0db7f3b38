"""Shared core of the LEC platform: configuration, domain types, record formats, registry access."""

__version__ = "0.1.0"

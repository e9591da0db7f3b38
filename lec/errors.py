"""Typed errors with messages a user can act on."""


class LecError(Exception):
    """Base of every error the platform raises on purpose."""


class ConfigError(LecError):
    """A setting is missing or has a value the platform cannot use."""


class RegistryError(LecError):
    """The registry database or a registry file is wrong."""


class RegistryFileError(RegistryError):
    """A community YAML file is invalid; names the line and field."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        where = []
        if line is not None:
            where.append(f"line {line}")
        if field:
            where.append(f"field '{field}'")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)
        self.line = line
        self.field = field


class ServiceError(LecError):
    """A local service (broker, chain, ...) failed to start or answer."""

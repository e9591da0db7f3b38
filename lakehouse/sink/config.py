"""Settings of the Delta sink that are not in ``lec.config.Settings`` (env ``LEC_LAKE_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from lec.errors import ConfigError


@dataclass(frozen=True)
class SinkConfig:
    commit_interval_s: float = 5.0       # LEC_LAKE_COMMIT_INTERVAL_S: max age of a buffered record
    commit_rows: int = 100_000           # LEC_LAKE_COMMIT_ROWS: commit as soon as this many are buffered
    maintain_interval_s: float = 3600.0  # LEC_LAKE_MAINTAIN_INTERVAL_S: compaction+checkpoint+vacuum; 0 = off
    vacuum_retention_h: int = 168        # LEC_LAKE_VACUUM_RETENTION_H: keep removed files this long (time travel)
    group_id: str = "lec-lake-sink"      # LEC_LAKE_SINK_GROUP: Kafka group (offsets there are informative only)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SinkConfig:
        env = os.environ if environ is None else environ
        fields = {"commit_interval_s": float, "commit_rows": int, "maintain_interval_s": float,
                  "vacuum_retention_h": int}
        values: dict[str, object] = {}
        for name, kind in fields.items():
            var = "LEC_LAKE_" + name.upper()
            if var in env:
                try:
                    values[name] = kind(env[var])
                except ValueError as exc:
                    raise ConfigError(f"{var}={env[var]!r} is not a valid {kind.__name__}") from exc
                if values[name] < 0:  # type: ignore[operator]
                    raise ConfigError(f"{var} must not be negative")
        if "LEC_LAKE_SINK_GROUP" in env:
            values["group_id"] = env["LEC_LAKE_SINK_GROUP"]
        if values.get("commit_rows", 1) == 0:
            raise ConfigError("LEC_LAKE_COMMIT_ROWS must be at least 1")
        return cls(**values)  # type: ignore[arg-type]

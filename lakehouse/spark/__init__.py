"""Spark sessions (Sail or JVM Spark with Delta), the local JVM Connect server, the periodic refresh worker."""

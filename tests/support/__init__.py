"""Real servers for tests, started on loopback with free ports and stopped afterwards."""

"""Connectors: MQTT bridge, SFTP area triage, HTTP ingest, Camel K integrations → Kafka raw topic."""

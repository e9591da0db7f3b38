"""The Camel channel: Camel K Integrations for external sources, run here on Apache Camel 4."""

"""The Delta sink: Kafka topics to Delta tables exactly once (worker, conversion, schema fitting, settings)."""

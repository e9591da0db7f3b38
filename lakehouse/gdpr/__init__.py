"""GDPR: erasure everywhere data is kept (lake, Kafka, files), access and portability exports."""

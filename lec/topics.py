"""Kafka topic names: the platform's public interface to downstream apps."""

RAW = "lec.raw"                    # raw envelopes from every connector (schemas/raw-envelope.json)
READINGS = "lec.readings"          # canonical readings, keyed by device (schemas/reading.json)
DEADLETTER = "lec.deadletter"      # rejected input with reason and original bytes (schemas/deadletter.json)
FEEDBACK = "lec.feedback"          # one answer per input message or batch, keyed by supplier (schemas/feedback.json)
ANOMALIES = "lec.anomalies"        # anomalies of the seed's table (schemas/anomaly.json)
ANCHORS = "lec.oracle.anchors"     # oracle anchor records (schemas/anchor.json)
URBANDATASET = "lec.urbandataset"  # KPIs as ENEA UrbanDataset documents, keyed by community (schemas/urbandataset.json)
REGISTRY = "lec.registry"          # compacted: registry snapshot change notifications
PROBE = "lec.probe"                # `lec status` liveness probes that went MQTT -> bridge -> Kafka

ALL = (RAW, READINGS, DEADLETTER, FEEDBACK, ANOMALIES, ANCHORS, REGISTRY, PROBE)

# Partitions and topic configs of each topic, as production declares them (infra/k8s/kafka.yaml,
# a test keeps the two equal). The platform creates them at start on either engine.
CONFIG: dict[str, tuple[int, dict[str, str]]] = {
    RAW: (24, {"retention.ms": "604800000"}),
    READINGS: (24, {"retention.ms": "2592000000"}),
    DEADLETTER: (6, {"retention.ms": "2592000000"}),
    FEEDBACK: (6, {"retention.ms": "604800000"}),
    ANOMALIES: (6, {"retention.ms": "2592000000"}),
    ANCHORS: (1, {"retention.ms": "-1"}),
    REGISTRY: (1, {"cleanup.policy": "compact"}),
    PROBE: (1, {"retention.ms": "3600000"}),
}

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

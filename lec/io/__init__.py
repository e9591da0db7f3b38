"""The I/O kernel: the one Kafka producer, the one topic reader and the one logging setup every
worker, tool, test and benchmark uses (docs/architecture.md, "I/O kernel")."""

from lec.io.logs import configure_logging
from lec.io.producer import DeliveryFailed, DeliveryTracker, Producer
from lec.io.reader import read_topic, replay

__all__ = ["DeliveryFailed", "DeliveryTracker", "Producer", "configure_logging", "read_topic", "replay"]

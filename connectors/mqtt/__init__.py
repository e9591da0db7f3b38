"""The MQTT channel: Mosquitto config from the registry, the bridge to lec.raw, feedback to suppliers."""

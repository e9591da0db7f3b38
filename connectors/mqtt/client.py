"""A paho-mqtt client that reads the socket in 64 KiB blocks.

Why: paho 2.2 reads every packet with three or more ``recv`` calls (1 byte of command, the length
byte by byte, then the body) and one ``select`` per packet, which caps one client at a few
thousand messages/s. Serving those small reads from a buffer keeps paho's own parser and
state machine; the buffer is dropped with the socket, so a new connection never sees old bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import paho.mqtt.client as mqtt

READ_BLOCK = 64 * 1024
_PUBACK = struct.Struct("!BBH")   # PUBACK, remaining length 2, packet id (reason "success" implied)


class BufferedClient(mqtt.Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(READ_BLOCK)   # BlockingIOError when nothing is there
            if not data:
                return data                          # connection closed
            self._rbuf, self._rpos = data, 0
        out = self._rbuf[self._rpos:self._rpos + bufsize]
        self._rpos += len(out)
        return out

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        # packets already in the buffer would otherwise wait for the socket to be readable again
        while rc == mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self._rpos < len(self._rbuf):
            rc = super().loop_read(1)
        return rc

    def ack_many(self, mids: list[int]) -> None:
        """PUBACK several QoS 1 messages (``manual_ack``) as one write: one wake-up of the network
        thread instead of one per message."""
        if mids:
            packet = b"".join(_PUBACK.pack(0x40, 2, mid) for mid in mids)
            self._packet_queue(0x40, packet, 0, 1)

"""HTTP ingest API (seed §4.3.2): batches of readings into ``lec.raw``, answered with a batch id.

``POST /v1/readings?flow_id=F`` with ``Content-Type: application/json`` (a JSON array of reading
objects, or ``{"flow_id": F, "device_id"?: D, "readings": [...]}``) or ``text/csv`` (a header
line, then one reading a line; ``flow_id`` in the query). The flow fixes the device; a supplier
may only post its own flows. The body is cut into items of at most ``CHUNK_READINGS`` readings
(and ``max_payload_bytes``); ``202`` is returned only once Kafka has acknowledged every item.
``GET /v1/batches/{id}`` reports per-reading acceptance from the streams' feedback.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from connectors.channel import RawSink
from connectors.http.batches import Batch, BatchStore, Chunk
from connectors.http.tokens import TokenError, TokenVerifier
from lec import topics
from lec.records import Rejection as Refusal
from lec.records import (
    deadletter_record,
    duplicate_json_key,
    message_id_for,
    raw_item,
    utc_now_iso,
)
from lec.registry.snapshot import RegistrySnapshot

CHUNK_READINGS = 1000
MAX_JSON_DEPTH = 254        # orjson writes at most this many levels
MAX_IDEMPOTENCY_KEY = 255
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class Problem(BaseModel):
    reason_code: str = Field(description="Machine-readable reason, e.g. not_owner, too_large, bad_json.")
    message: str = Field(description="What went wrong and what to do about it.")


class Accepted(BaseModel):
    batch_id: str
    flow_id: str
    device_id: str
    readings: int
    items: int
    status_url: str


class Rejection(BaseModel):
    index: int
    line: int | None = None
    reason_code: str | None = None
    message: str | None = None


class ItemStatus(BaseModel):
    message_id: str
    index: int
    count: int
    status: str


class BatchReport(BaseModel):
    batch_id: str
    supplier_id: str
    flow_id: str
    device_id: str
    received_ts: str
    readings: int
    status: str = Field(description="pending until every item has its feedback, then complete.")
    accepted: int
    rejected: int
    duplicates: int
    pending: int
    items: list[ItemStatus]
    rejections: list[Rejection]
    reading_status: list[str] | None = Field(None, description="With ?readings=true: one status per reading.")


class ApiError(Refusal):
    """A refused request: the record contract's rejection with the HTTP status that answers it."""

    def __init__(self, status: int, reason_code: str, message: str) -> None:
        super().__init__(reason_code, message)
        self.status = status


def _problem(status: int, description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description}


ERRORS = {401: _problem(401, "Missing or invalid bearer token."),
          403: _problem(403, "The supplier does not own this flow/device.")}

READINGS_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"oneOf": [
            {"type": "array", "items": {"type": "object"}, "description": "Readings of the flow in ?flow_id."},
            {"type": "object", "required": ["flow_id", "readings"], "properties": {
                "flow_id": {"type": "string"}, "device_id": {"type": "string"},
                "readings": {"type": "array", "items": {"type": "object"}}}}]}},
        "text/csv": {"schema": {"type": "string", "description": "A header line, then one reading a line."}},
    },
}


class KafkaSender:
    """An idempotent producer whose deliveries resolve asyncio futures (polled on its own thread)."""

    def __init__(self, bootstrap: str) -> None:
        from lec.io import Producer

        self.producer = Producer(bootstrap, **{"message.max.bytes": 16 * 1024 * 1024, "message.timeout.ms": 30000})
        self.raw = RawSink("http", self.producer)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    async def send(self, records: list[tuple[bytes, bytes]], topic: str = topics.RAW) -> None:
        """Produce ``(key, value)`` records (to lec.raw by default); return when Kafka acknowledged all."""
        loop = asyncio.get_running_loop()
        futures = []
        for key, value in records:
            fut = loop.create_future()

            def done(err: Any, _msg: Any, fut: asyncio.Future = fut) -> None:
                loop.call_soon_threadsafe(_settle, fut, err)

            while not self.producer.try_produce(topic, value, key, done, wait_s=0):
                await asyncio.sleep(0.01)  # local queue full: let the poll thread drain it
            futures.append(fut)
        errors = [e for e in await asyncio.gather(*futures) if e is not None]
        if errors:
            raise ApiError(503, "kafka_unavailable", f"the platform could not store the batch ({errors[0]}): "
                                                     "retry later with the same Idempotency-Key")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.producer.flush(10)


def _settle(fut: asyncio.Future, err: Any) -> None:
    if not fut.done():
        fut.set_result(err)


def create_app(*, sender: KafkaSender, snapshot: Callable[[], RegistrySnapshot], verifier: TokenVerifier,
               store: BatchStore, max_body_bytes: int, max_payload_bytes: int,
               jwks: Callable[[], dict[str, Any]] | None = None, remote_jwks: bool = False) -> FastAPI:
    app = FastAPI(title="LEC HTTP ingest", version="1.0",
                  description="Batches of meter readings from suppliers into the LEC platform.")

    @app.exception_handler(ApiError)
    async def api_error(_req: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"reason_code": exc.reason_code, "message": exc.message}, exc.status, headers=headers)

    async def supplier_of(request: Request) -> str:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "no_token", "send 'Authorization: Bearer <token>' (`lec tokens issue --supplier ID`)")
        try:
            if remote_jwks:  # may fetch the JWKS over HTTP: keep the event loop free
                return await asyncio.to_thread(verifier.supplier_of, token.strip())
            return verifier.supplier_of(token.strip())
        except TokenError as exc:
            raise ApiError(401, "bad_token", str(exc)) from exc

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise ApiError(413, "too_large", f"body of {declared} bytes exceeds the limit of {max_body_bytes}: "
                                             "send smaller batches")
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > max_body_bytes:
                raise ApiError(413, "too_large", f"body exceeds the limit of {max_body_bytes} bytes: "
                                                 "send smaller batches")
            parts.append(part)
        return b"".join(parts)

    @app.post("/v1/readings", status_code=202, response_model=Accepted, openapi_extra={"requestBody": READINGS_BODY},
              operation_id="post_readings",
              responses={202: {"links": {"GetBatch": {"operationId": "get_batch",
                                                      "parameters": {"batch_id": "$response.body#/batch_id"}}}},
                         **ERRORS, 400: _problem(400, "Malformed body or parameters."),
                         409: _problem(409, "Idempotency-Key already used for a different request."),
                         413: _problem(413, "Body or one reading too large."),
                         415: _problem(415, "Content type not JSON or CSV."),
                         503: _problem(503, "Kafka did not take the batch: retry.")})
    async def post_readings(request: Request, flow_id: str | None = None, device_id: str | None = None) -> Any:
        """Take a batch of readings of one flow; 202 once stored in Kafka, with the batch id to poll."""
        supplier = await supplier_of(request)
        body = await read_body(request)
        try:
            return await take_batch(request, supplier, body, flow_id, device_id)
        except ApiError as exc:
            if exc.status != 503:  # refused, not just "retry later": keep the bytes and the reason
                await deadletter(supplier, body, exc, flow_id or request.query_params.get("flow_id"))
            raise

    async def deadletter(supplier: str, body: bytes, exc: ApiError, flow_id: str | None) -> None:
        """A refused request of an authenticated supplier goes to lec.deadletter with its bytes and reason
        (the supplier hears the same reason in the response). Anonymous requests are not recorded."""
        digest = hashlib.sha256(body).hexdigest()
        flow = snapshot().flows.get(flow_id or "")
        record = deadletter_record(
            reason_code=exc.reason_code, message=exc.message, channel="http", supplier_id=supplier,
            message_id=message_id_for("http", supplier, "refused", digest, utc_now_iso()), payload=body,
            source={}, community_id=flow.community_id if flow else None,
            device_id=flow.device_id if flow else None, flow_id=flow_id)
        await sender.send([(supplier.encode(), orjson.dumps(record))], topic=topics.DEADLETTER)

    async def take_batch(request: Request, supplier: str, body: bytes, flow_id: str | None,
                         device_id: str | None) -> Any:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("application/json", ""):
            flow_id, device_id, payloads = _json_chunks(body, flow_id, device_id, max_payload_bytes)
            content_type = "application/json"
            header = None
        elif ctype == "text/csv":
            header, payloads = _csv_chunks(body, max_payload_bytes)
            content_type = "text/csv"
        else:
            raise ApiError(415, "unsupported_media_type", f"Content-Type '{ctype}' is not accepted: "
                                                          "use application/json or text/csv")
        if not flow_id:
            raise ApiError(400, "no_flow", "name the flow: ?flow_id=... (or \"flow_id\" in a JSON object body)")
        snap = snapshot()
        flow = snap.flows.get(flow_id)
        if flow is None or not snap.supplier_owns(supplier, flow.device_id, flow_id):
            raise ApiError(403, "not_owner", f"supplier '{supplier}' does not supply flow '{flow_id}'")
        if device_id is not None and device_id != flow.device_id:
            raise ApiError(403, "not_owner", f"flow '{flow_id}' belongs to device '{flow.device_id}', "
                                             f"not '{device_id}'")
        key = request.headers.get("idempotency-key")
        # the key names one request: the same key again with another flow or body is a client bug, not a
        # retry (it used to reuse the first batch's id, so the second flow's readings were "duplicates")
        fingerprint = hashlib.sha256(b"\x00".join([flow_id.encode(), content_type.encode(), body])).hexdigest()
        if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
            raise ApiError(400, "bad_idempotency_key", f"an Idempotency-Key has 1 to {MAX_IDEMPOTENCY_KEY} characters")
        batch_id = (hashlib.sha256(f"{supplier}\x00{key}\x00{fingerprint}".encode()).hexdigest()[:32] if key
                    else uuid.uuid4().hex)
        received = utc_now_iso()
        chunks, records = [], []
        for index, count, payload in payloads:
            mid = message_id_for("http", supplier, batch_id, str(index))
            source: dict[str, Any] = {"batch_id": batch_id, "index": index}
            if header is not None:
                source["header"] = header
            item = raw_item(payload, message_id=mid, source=source, device_id=flow.device_id,  # type: ignore[arg-type]
                            flow_id=flow_id, content_type=content_type, received_ts=received)
            record = sender.raw.record(flow.community_id, supplier, flow.device_id, [item])
            records.append((record.key, record.value))
            chunks.append(Chunk(mid, index, count))
        readings = sum(c.count for c in chunks)
        if readings == 0:
            raise ApiError(400, "no_readings", "the body holds no readings")
        batch = store.claim(Batch(batch_id, supplier, flow_id, flow.device_id, received, readings, chunks,
                                  idempotency_key=key, fingerprint=fingerprint))
        if batch.fingerprint != fingerprint:
            raise ApiError(409, "idempotency_key_reused",
                           f"Idempotency-Key '{key}' was already used for another request (batch {batch.batch_id}, "
                           f"flow '{batch.flow_id}'): send a new batch with a new key; resend only the identical "
                           "request with the same key")
        if not batch.stored:  # a retry of a request Kafka did not take yet: send the same records again
            await sender.send(records)
            batch.stored = True
        return {"batch_id": batch.batch_id, "flow_id": batch.flow_id, "device_id": batch.device_id,
                "readings": batch.readings, "items": len(batch.chunks), "status_url": f"/v1/batches/{batch.batch_id}"}

    @app.get("/v1/batches/{batch_id}", response_model=BatchReport, response_model_exclude_none=True,
             operation_id="get_batch",
             responses={**ERRORS, 404: _problem(404, "No such batch for this supplier on this server.")})
    async def get_batch(request: Request, batch_id: str, readings: bool = False) -> Any:
        """Acceptance of each reading of a batch, from the feedback of its items."""
        supplier = await supplier_of(request)
        batch = store.get(batch_id)
        if batch is None or batch.supplier_id != supplier:
            raise ApiError(404, "unknown_batch", f"no batch '{batch_id}' of supplier '{supplier}' here")
        return store.report(batch, with_readings=readings)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    if jwks is not None:
        @app.get("/.well-known/jwks.json", include_in_schema=False)
        @app.get("/realms/lec/protocol/openid-connect/certs", include_in_schema=False)
        async def jwks_endpoint() -> Response:
            return Response(orjson.dumps(jwks()), media_type="application/json")

    return app


def _json_chunks(body: bytes, flow_id: str | None, device_id: str | None,
                 max_payload: int) -> tuple[str | None, str | None, list[tuple[int, int, bytes]]]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from exc
    if (key := duplicate_json_key(body, doc)) is not None:  # e.g. two "flow_id": a proxy may have read the first
        raise ApiError(400, "bad_json", f"the key '{key[:60]}' appears twice in one JSON object: programs disagree on "
                                        "which value counts, so send each key once")
    if isinstance(doc, dict):
        readings = doc.get("readings")
        body_flow, body_device = doc.get("flow_id"), doc.get("device_id")
        if not isinstance(body_flow, str) or (body_device is not None and not isinstance(body_device, str)):
            raise ApiError(400, "bad_body", "a JSON object body needs \"flow_id\" (string) and \"readings\" (array)")
        if flow_id is not None and flow_id != body_flow:
            raise ApiError(400, "flow_mismatch", f"?flow_id={flow_id} and the body's flow_id={body_flow} differ")
        flow_id, device_id = body_flow, body_device if body_device is not None else device_id
    else:
        readings = doc
    if not isinstance(readings, list) or not all(isinstance(r, dict) for r in readings):
        raise ApiError(400, "bad_body", "readings must be a JSON array of objects")
    return flow_id, device_id, _split(readings, 0, max_payload)


def _split(readings: list[Any], start: int, max_payload: int) -> list[tuple[int, int, bytes]]:
    """Items of at most CHUNK_READINGS readings and max_payload bytes: (first index, count, bytes)."""
    out = []
    for i in range(0, len(readings), CHUNK_READINGS):
        part = readings[i:i + CHUNK_READINGS]
        try:
            data = orjson.dumps(part)
        except TypeError:  # orjson.JSONEncodeError: nested deeper than it writes (a 500 once)
            raise _too_deep(part, start + i) from None
        if len(data) <= max_payload:
            out.append((start + i, len(part), data))
        elif len(part) == 1:
            raise ApiError(413, "too_large", f"reading {start + i} alone is {len(data)} bytes, over the limit of "
                                             f"{max_payload}")
        else:
            half = len(part) // 2
            out += _split(part[:half], start + i, max_payload)
            out += _split(part[half:], start + i + half, max_payload)
    return out


def _too_deep(part: list[Any], first: int) -> ApiError:
    """The 400 naming the first reading of ``part`` that cannot be written back as JSON."""
    for k, reading in enumerate(part):
        try:
            orjson.dumps(reading)
        except TypeError:
            return ApiError(400, "too_deep", f"reading {first + k} is nested more than {MAX_JSON_DEPTH} levels "
                                             "deep: send flat reading objects")
    return ApiError(400, "too_deep", f"readings {first}.. are nested too deeply: send flat reading objects")


def _csv_chunks(body: bytes, max_payload: int) -> tuple[str, list[tuple[int, int, bytes]]]:
    """Header line, then items of the exact lines (at most CHUNK_READINGS lines and max_payload bytes)."""
    lines = body.split(b"\n")
    if lines and lines[-1] in (b"", b"\r"):
        lines.pop()
    if not lines:
        raise ApiError(400, "no_readings", "a CSV body needs a header line and at least one reading line")
    try:
        header = lines[0].rstrip(b"\r").decode()
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_encoding", "the CSV header line is not UTF-8") from exc
    rows = lines[1:]
    out: list[tuple[int, int, bytes]] = []
    i = 0
    while i < len(rows):
        j, size = i, 0
        while j < len(rows) and j - i < CHUNK_READINGS and size + len(rows[j]) + 1 <= max_payload:
            size += len(rows[j]) + 1
            j += 1
        if j == i:
            raise ApiError(413, "too_large", f"CSV line {i + 2} is over the limit of {max_payload} bytes")
        out.append((i, j - i, b"\n".join(rows[i:j]) + b"\n"))
        i = j
    return header, out

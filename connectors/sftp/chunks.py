"""Cut an uploaded file into bounded chunks of whole lines, in constant memory.

Two passes over one open file descriptor: ``scan`` checks what the transport owns (decodable
bytes, lines within the bound) and computes the SHA-256 that identifies the file; ``chunks`` then
yields the exact bytes of consecutive lines with their 1-based line numbers. Parsing the content
(CSV columns, timestamps, values) is the streams' job, not the connector's.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

READ_BLOCK = 1 << 20


@dataclass(frozen=True)
class Problem:
    """Why a file cannot be ingested, and where (a line a supplier can find)."""

    reason_code: str
    line: int | None
    message: str


@dataclass(frozen=True)
class FileScan:
    sha256: str
    size: int
    lines: int
    problem: Problem | None = None


@dataclass(frozen=True)
class Chunk:
    payload: bytes
    line_start: int
    line_end: int


def _line_blocks(fd: int, block: int = READ_BLOCK) -> Iterator[tuple[bytes, bool]]:
    """Blocks that end at a line end (the last one may not); yields (data, is_last)."""
    os.lseek(fd, 0, os.SEEK_SET)
    carry = b""
    while True:
        data = os.read(fd, block)
        if not data:
            if carry:
                yield carry, True
            return
        data = carry + data if carry else data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data  # no line end yet: keep reading (bounded by the caller's line check)
            if len(carry) > 64 * block:
                yield carry, False
                carry = b""
            continue
        carry = data[cut:]
        yield data[:cut], False


def _long_line(data: bytes, max_line: int) -> int | None:
    """Offset of the start of a line longer than ``max_line`` bytes (without its end), if any.

    Jumps to the last line end of each window, so it costs ~len/max_line steps, not one per line.
    """
    pos, n = 0, len(data)
    while n - pos > max_line + 1:
        nl = data.rfind(b"\n", pos, pos + max_line + 1)
        if nl == -1:
            return pos
        pos = nl + 1
    tail_nl = data.find(b"\n", pos)
    end = n if tail_nl == -1 else tail_nl
    return pos if end - pos > max_line else None


def scan(fd: int, *, max_line_bytes: int, encoding: str = "utf-8") -> FileScan:
    """SHA-256, size and line count of the file; the first transport problem found, if any."""
    sha = hashlib.sha256()
    lines = size = 0
    check_text = codecs.lookup(encoding).name not in ("latin-1", "iso8859-1")
    problem: Problem | None = None
    for data, _last in _line_blocks(fd):
        sha.update(data)
        if problem is None:
            bad = _long_line(data, max_line_bytes)
            if bad is not None:
                line = lines + data.count(b"\n", 0, bad) + 1
                problem = Problem("line_too_long", line,
                                  f"line {line} is longer than {max_line_bytes} bytes (a missing line end?); "
                                  f"split it or fix the line ends and upload the file again")
            elif check_text:
                try:
                    data.decode(encoding)
                except UnicodeDecodeError as exc:
                    line = lines + data.count(b"\n", 0, exc.start) + 1
                    problem = Problem("undecodable_bytes", line,
                                      f"line {line} has bytes that are not valid {encoding} "
                                      f"(byte {data[exc.start:exc.start + 1]!r}); save the file as {encoding}")
        lines += data.count(b"\n")
        size += len(data)
        if data and not data.endswith(b"\n"):
            lines += 1  # a last line without line end still counts
    return FileScan(sha.hexdigest(), size, lines, problem)


def _split_lines(data: bytes, max_lines: int) -> int:
    """Offset just after the ``max_lines``-th line end of ``data``."""
    pos = -1
    for _ in range(max_lines):
        pos = data.find(b"\n", pos + 1)
    return pos + 1


def chunks(fd: int, *, chunk_bytes: int, chunk_lines: int, skip_header: bool) -> Iterator[Chunk]:
    """Consecutive chunks of whole lines, each at most ``chunk_bytes`` (lines are already bounded
    below that by ``scan``) and ``chunk_lines`` lines; the header line, if any, is left out."""
    line_no = 1
    buf = b""
    header_pending = skip_header
    blocks = _line_blocks(fd)
    while True:
        data, last = next(blocks, (b"", True))
        buf = buf + data if buf else data
        if header_pending:
            nl = buf.find(b"\n")
            if nl == -1 and not last:
                continue
            buf = b"" if nl == -1 else buf[nl + 1:]
            line_no, header_pending = 2, False
        while len(buf) >= chunk_bytes or (last and buf):
            cut = buf.rfind(b"\n", 0, chunk_bytes) + 1 if len(buf) > chunk_bytes else len(buf)
            if cut == 0:  # one line longer than a chunk: scan refuses these, keep it whole anyway
                nl = buf.find(b"\n")
                cut = len(buf) if nl == -1 else nl + 1
            count = buf.count(b"\n", 0, cut)
            if count > chunk_lines:
                cut, count = _split_lines(buf, chunk_lines), chunk_lines
            piece, buf = buf[:cut], buf[cut:]
            nlines = count + (0 if piece.endswith(b"\n") else 1)
            yield Chunk(piece, line_no, line_no + nlines - 1)
            line_no += nlines
        if last:
            return


def read_header(fd: int, max_line_bytes: int) -> str | None:
    """The first line without its line end (None for an empty file)."""
    os.lseek(fd, 0, os.SEEK_SET)
    first = os.read(fd, max_line_bytes + 2)
    if not first:
        return None
    nl = first.find(b"\n")
    line = first if nl == -1 else first[:nl]
    return line.rstrip(b"\r").decode("utf-8", errors="replace")

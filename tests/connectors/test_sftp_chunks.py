"""Chunking of uploaded files: exact bytes, line numbers, bounds, transport problems."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime
from pathlib import Path

import pytest

from connectors.sftp.area import SftpError, VirtualPath
from connectors.sftp.chunks import chunks, read_header, scan
from connectors.sftp.watch import Window


def _fd(path: Path, data: bytes) -> int:
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


@pytest.mark.parametrize("final_newline", [True, False])
@pytest.mark.parametrize("chunk_bytes,chunk_lines", [(64, 1000), (1000, 3), (10_000, 10_000)])
def test_chunks_rebuild_the_file_exactly_with_line_numbers(tmp_path: Path, final_newline: bool,
                                                            chunk_bytes: int, chunk_lines: int) -> None:
    lines = [b"ts,kwh\r"] + [f"2024-01-01T00:{i % 60:02d}:00Z,{i * 0.25:.2f}\r".encode() for i in range(200)]
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    fd = _fd(tmp_path / "f.csv", data)
    got = list(chunks(fd, chunk_bytes=chunk_bytes, chunk_lines=chunk_lines, skip_header=True))
    assert b"".join(c.payload for c in got) == data[len(lines[0]) + 1:]
    expected_line = 2
    for c in got:
        assert len(c.payload) <= chunk_bytes
        n = c.payload.count(b"\n") + (0 if c.payload.endswith(b"\n") else 1)
        assert n <= chunk_lines
        assert (c.line_start, c.line_end) == (expected_line, expected_line + n - 1)
        # the chunk's first line is the file's line number line_start
        assert c.payload.split(b"\n")[0] == lines[c.line_start - 1]
        expected_line += n
    assert expected_line == len(lines) + 1
    assert read_header(fd, 1000) == "ts,kwh"
    os.close(fd)


def test_scan_counts_lines_and_hashes(tmp_path: Path) -> None:
    data = b"a,b\n1,2\n3,4"
    fd = _fd(tmp_path / "f.csv", data)
    result = scan(fd, max_line_bytes=100)
    assert (result.sha256, result.size, result.lines, result.problem) == (hashlib.sha256(data).hexdigest(), 11, 3, None)


def test_scan_reports_the_line_of_undecodable_bytes(tmp_path: Path) -> None:
    data = b"ts,kwh\n" + b"2024-01-01T00:00:00Z,1\n" * 5000 + b"2024-01-01T00:15:00Z,\xff\xfe\n" + b"x,1\n" * 10
    result = scan(_fd(tmp_path / "f.csv", data), max_line_bytes=1000)
    assert result.problem is not None
    assert (result.problem.reason_code, result.problem.line) == ("undecodable_bytes", 5002)
    assert result.lines == 5012
    # latin-1 flows accept any byte
    assert scan(_fd(tmp_path / "g.csv", data), max_line_bytes=1000, encoding="latin-1").problem is None


@pytest.mark.parametrize("where", [1, 777, 3000])
def test_scan_reports_the_first_line_longer_than_the_bound(tmp_path: Path, where: int) -> None:
    rows = [b"x" * (i % 90) for i in range(3000)]
    rows[where - 1] = b"y" * 2001
    data = b"\n".join(rows)
    result = scan(_fd(tmp_path / "f.csv", data), max_line_bytes=2000)
    assert result.problem is not None and result.problem.reason_code == "line_too_long"
    assert result.problem.line == where
    rows[where - 1] = b"y" * 2000  # exactly at the bound is fine
    assert scan(_fd(tmp_path / "g.csv", b"\n".join(rows)), max_line_bytes=2000).problem is None


def test_virtual_paths_cannot_climb_out_and_only_inbox_flows_are_writable() -> None:
    own = {"f-a"}
    assert VirtualPath.parse("../../etc/passwd").parts == ("etc", "passwd")
    assert VirtualPath.parse("/inbox/../../sup-b/inbox/f-b/x").parts == ("sup-b", "inbox", "f-b", "x")
    assert VirtualPath.parse("inbox/f-a/data.csv").is_upload_target(own)
    assert not VirtualPath.parse("inbox/f-b/data.csv").is_upload_target(own)
    assert not VirtualPath.parse("processed/f-a/data.csv").is_upload_target(own)
    assert not VirtualPath.parse("inbox/f-a").is_upload_target(own)
    assert not VirtualPath.parse("inbox/f-a/sub/x.csv").is_upload_target(own)


def test_schedule_window() -> None:
    w = Window("22:00-06:00")
    assert w.is_open(datetime(2024, 1, 1, 23, 30)) and w.is_open(datetime(2024, 1, 1, 5, 59))
    assert not w.is_open(datetime(2024, 1, 1, 12, 0))
    assert Window("01:00-03:00").is_open(datetime(2024, 1, 1, 2, 0))
    assert not Window("01:00-03:00").is_open(datetime(2024, 1, 1, 3, 0))
    assert Window("immediate").is_open()
    with pytest.raises(SftpError, match="HH:MM-HH:MM"):
        Window("at night")

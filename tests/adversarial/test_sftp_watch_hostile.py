"""Hostile uploads against the SFTP watcher and a real Tansu broker (issue 9, findings 2 and 4).

- a file name that is not UTF-8 is refused with a report; it does not stop anyone else's files;
- any unexpected error while handling one file sets that file aside in failed/ and the scan goes on;
- a file replaced (posix_rename) while the watcher reads it: the bytes ingested are the bytes archived.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from typing import Any

from connectors.sftp.watch import SftpWatcher, WatchOptions
from tests.connectors.test_sftp_watch import consume_all, csv_lines, world  # noqa: F401 - the fixture

CSV = b"ts,kwh\n2024-01-01T00:00:00Z,1\n"


def test_non_utf8_file_name_is_refused_and_other_files_go_on(world: dict[str, Any]) -> None:  # noqa: F811
    inbox = world["area"].folder("sup-a", "inbox", "f-a")
    bad = os.path.join(os.fsencode(inbox), b"\xff\xfebad.csv")
    with open(bad, "wb") as fh:
        fh.write(CSV)
    (inbox / "good.csv").write_bytes(b"ts,kwh\n2024-01-01T00:15:00Z,2\n")
    (world["area"].folder("sup-b", "inbox", "f-b") / "b.csv").write_bytes(b"ts,kwh\n2024-01-01T00:30:00Z,3\n")
    outcomes = {o.file: o for o in world["watcher"].scan_once()}
    assert {f: o.status for f, o in outcomes.items()} == {
        "inbox/f-a/\\xff\\xfebad.csv": "failed", "inbox/f-a/good.csv": "processed", "inbox/f-b/b.csv": "processed"}
    assert outcomes["inbox/f-a/\\xff\\xfebad.csv"].problem.reason_code == "bad_file_name"
    failed = os.fsencode(world["area"].folder("sup-a", "failed", "f-a"))
    with open(os.path.join(failed, b"\xff\xfebad.csv"), "rb") as fh:
        assert fh.read() == CSV  # kept, bytes and name as uploaded
    with open(os.path.join(failed, b"\xff\xfebad.csv.report.txt"), "rb") as fh:
        report = fh.read().decode()
    assert "reason: bad_file_name" in report and "not valid UTF-8" in report
    [(key, dead)] = consume_all(world["bootstrap"], world["dl"], expect=1)
    assert (key, dead["reason_code"], dead["source"]["file"]) == (b"sup-a", "bad_file_name",
                                                                   "inbox/f-a/\\xff\\xfebad.csv")
    assert base64.b64decode(dead["payload_b64"]) == CSV
    assert len(consume_all(world["bootstrap"], world["topic"], expect=2)) == 2


def test_control_characters_in_a_name_cannot_forge_report_lines(world: dict[str, Any]) -> None:  # noqa: F811
    inbox = world["area"].folder("sup-a", "inbox", "f-a")
    (inbox / "x\nreason: fine.csv").write_bytes(CSV)
    [outcome] = world["watcher"].scan_once()
    assert (outcome.status, outcome.problem.reason_code, outcome.file) == (
        "failed", "bad_file_name", "inbox/f-a/x\\x0areason: fine.csv")


def test_one_file_failing_unexpectedly_does_not_stop_the_others(world: dict[str, Any]) -> None:  # noqa: F811
    # a real fault: processed/f-a is a plain file (an operator's mistake), so archiving f-a files fails
    processed = world["area"].folder("sup-a", "processed", "f-a")
    processed.rmdir()
    processed.write_bytes(b"not a folder")
    (world["area"].folder("sup-a", "inbox", "f-a") / "a.csv").write_bytes(CSV)
    (world["area"].folder("sup-b", "inbox", "f-b") / "b.csv").write_bytes(CSV)
    outcomes = {o.file: o for o in world["watcher"].scan_once()}
    assert outcomes["inbox/f-b/b.csv"].status == "processed"
    bad = outcomes["inbox/f-a/a.csv"]
    assert (bad.status, bad.problem.reason_code) == ("failed", "internal_error")
    failed = world["area"].folder("sup-a", "failed", "f-a")
    assert (failed / "a.csv").read_bytes() == CSV
    assert "could not be processed" in (failed / "a.csv.report.txt").read_text()
    assert [o.status for o in world["watcher"].scan_once()] == []  # nothing retried in a loop


def test_file_replaced_while_read_archives_exactly_what_was_ingested(world: dict[str, Any]) -> None:  # noqa: F811
    """A supplier posix_renames new content over the name while the watcher is sending the file."""
    from lec.io import replay
    from lec.kafka import ensure_topics

    inbox = world["area"].folder("sup-a", "inbox", "f-a")
    path = inbox / "day.csv"
    body = b"ts,kwh\n" + b"\n".join(csv_lines(40_000)) + b"\n"
    path.write_bytes(body)
    newer = b"ts,kwh\n2024-02-01T00:00:00Z,7\n"
    # one line per chunk: sending takes long enough to swap the file while it is being read
    watcher = SftpWatcher(world["reg"], world["area"], world["watcher"].state, world["watcher"].producer,
                          WatchOptions(chunk_bytes=4096, chunk_lines=1, max_line_bytes=1024, settle_s=0),
                          raw_topic=world["topic"], deadletter_topic=world["dl"])
    ensure_topics(world["bootstrap"], (world["topic"],))
    raw = replay(world["bootstrap"], world["topic"], batch=100, poll_s=0.05, group="swap")
    swapped = threading.Event()

    def swap_once_sending() -> None:  # what `posix_rename` over SFTP does: atomically swap in a new file
        while not next(raw):
            pass
        tmp = inbox / ".day.csv.tmp"
        tmp.write_bytes(newer)
        os.rename(tmp, path)
        swapped.set()

    swapper = threading.Thread(target=swap_once_sending, daemon=True)
    swapper.start()
    try:
        first = watcher.scan_once()
        swapper.join(60)
    finally:
        raw.close()
    assert swapped.is_set() and [o.status for o in first] == ["processed"]
    watcher.scan_once()  # the newer upload, if still in the inbox
    ingested = {item["source"]["file_sha256"]
                for _, env in consume_all(world["bootstrap"], world["topic"]) for item in env["items"]}
    archived = {hashlib.sha256(p.read_bytes()).hexdigest()
                for p in world["area"].folder("sup-a", "processed", "f-a").iterdir()}
    assert archived == ingested == {hashlib.sha256(body).hexdigest(), hashlib.sha256(newer).hexdigest()}, \
        "every archived file must be exactly a file that was ingested, and both uploads must be ingested"


def test_empty_or_header_only_file_is_refused_not_silently_processed(world: dict[str, Any]) -> None:  # noqa: F811
    inbox = world["area"].folder("sup-a", "inbox", "f-a")
    (inbox / "empty.csv").write_bytes(b"")
    (inbox / "header.csv").write_bytes(b"ts,kwh\n")
    outcomes = sorted((o.file, o.status, o.problem.reason_code) for o in world["watcher"].scan_once())
    assert outcomes == [("inbox/f-a/empty.csv", "failed", "no_readings"), ("inbox/f-a/header.csv", "failed", "no_readings")]
    assert "no data lines after its header" in (
        world["area"].folder("sup-a", "failed", "f-a") / "header.csv.report.txt").read_text()
    assert len(consume_all(world["bootstrap"], world["dl"], expect=2)) == 2

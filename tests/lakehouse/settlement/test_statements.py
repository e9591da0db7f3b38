"""Statements: the members' tree equals @openzeppelin/merkle-tree's, the month is anchored on the
notary (anvil), and the HTML page verifies the proof in headless Chromium against the chain."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lakehouse.settlement.anchor import (
    StatementNotVerifiedError,
    anchor_month,
    render_html,
    statement,
    verify_statement,
    write_statement,
)
from lakehouse.settlement.run import settle_month
from lakehouse.settlement.statements import STATEMENT_TYPES, build_tree
from lakehouse.settlement.store import SettlementStore
from oracle.chain.client import NotaryClient, deploy
from oracle.chain.keys import address_of, dev_key
from oracle.merkle import hex32
from tests.lakehouse.settlement.sample import CID, day_rows, may_lake
from tests.support.chain import ROOT
from tests.support.kpi_sample import readings_table, write_readings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

_OZ = """
const path = require('path');
const { StandardMerkleTree } = require(path.join(process.argv[1], 'node_modules', '@openzeppelin', 'merkle-tree'));
const req = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const tree = StandardMerkleTree.of(req.values, req.types);
process.stdout.write(JSON.stringify({ root: tree.root, proofs: req.values.map((_, i) => tree.getProof(i)) }));
"""


def test_statements_tree_is_openzeppelins() -> None:
    members = {f"u{i}": {"wallet": "0x" + f"{i + 1:040x}", "amount_cents": i * 137, "counted_withdrawal_mwh": i * 1000,
                         "counted_injection_mwh": 7} for i in range(5)}
    root, leaves = build_tree(202605, members)
    values = [leaves[u][0] for u in sorted(members)]
    out = subprocess.run(["node", "-e", _OZ, str(ROOT)], capture_output=True, text=True, check=True, timeout=60,
                         input=json.dumps({"values": [[str(v) for v in vals] for vals in values],
                                           "types": list(STATEMENT_TYPES)}))
    ref = json.loads(out.stdout)
    assert hex32(root) == ref["root"]
    assert [leaves[u][1] for u in sorted(members)] == ref["proofs"]
    assert values[2][4] == 274 * 10 ** 16     # 2.74 € -> 2.74 tokens of 18 decimals


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def page_state(browser, html: Path) -> dict[str, str]:
    page = browser.new_page()
    try:
        page.goto(html.as_uri())
        page.wait_for_function("document.getElementById('status').textContent !== 'verifying…'", timeout=30_000)
        return {k: page.text_content(f"#{k}") or "" for k in ("status", "detail", "euros", "tokens", "shared", "hours")} | {
            "bars": str(page.locator("#chart rect").count())}
    finally:
        page.close()


@pytest.mark.slow
def test_anchor_and_browser_verified_statement(settings, registry, anvil_rpc, browser, tmp_path: Path) -> None:
    lake = may_lake(settings.resolved_lake_uri(), day_rows(4) + day_rows(5))
    summary = settle_month(settings, CID, "2026-05", registry=registry)
    admin = dev_key(0)
    d = deploy(anvil_rpc, admin, oracle_address=address_of(admin), community_ids=[CID])
    client = NotaryClient(anvil_rpc, d, admin)
    store = SettlementStore(lake)
    with pytest.raises(Exception, match="not anchored yet"):
        statement(store, CID, "2026-05", "u-anna", anvil_rpc)
    rec = anchor_month(store, client, CID, "2026-05")
    assert rec["sent"] and rec["chain_version"] == 1 and rec["statements_root"] == summary["statements_root"]
    assert anchor_month(store, client, CID, "2026-05")["sent"] is False          # idempotent
    on_chain = client.get_settlement(CID, 202605, 1)
    assert hex32(on_chain["statementsRoot"]) == summary["statements_root"]
    assert hex32(on_chain["inputsDigest"]) == summary["inputs_digest"] and on_chain["totalCents"] == 323

    doc = statement(store, CID, "2026-05", "u-anna", anvil_rpc)
    json_path, html_path = write_statement(doc, tmp_path / "statements")
    assert json.loads(json_path.read_text())["leaf"]["values"][2] == "97"
    assert verify_statement(json.loads(json_path.read_text()))["verified"]     # the same check in Python
    got = page_state(browser, html_path)
    assert got["status"] == "verified", got["detail"]
    assert got["euros"] == "0.97 €" and got["tokens"] == "0.97"
    assert got["shared"] == "16.000 kWh" and got["hours"] == "4" and got["bars"] == "4"   # 2 days x 2 bars

    tampered = json.loads(json_path.read_text())
    tampered["leaf"]["values"][2] = "9700"                                    # claim 97 € instead of 0.97
    bad = tmp_path / "tampered.html"
    bad.write_text(render_html(tampered))
    with pytest.raises(StatementNotVerifiedError, match="does not lead to the root"):
        verify_statement(tampered)
    got = page_state(browser, bad)
    assert got["status"] == "not verified" and "does not lead to the root" in got["detail"]
    assert got["euros"] == "97.00 €"

    # late readings: version 2 is anchored as chain version 2; the old statement says "superseded"
    write_readings(lake, readings_table(CID, day_rows(6)))
    settle_month(settings, CID, "2026-05", registry=registry)
    assert anchor_month(store, client, CID, "2026-05")["chain_version"] == 2
    got = page_state(browser, html_path)
    assert got["status"] == "verified" and "superseded: the chain has version 2" in got["detail"]

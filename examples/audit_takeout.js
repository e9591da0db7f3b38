#!/usr/bin/env node
// Independent audit of an LEC take-out file (spec/oracle.md §10) with the OpenZeppelin library
// alone: no LEC code. Needs Node >= 18 and `npm install @openzeppelin/merkle-tree` (which brings
// @metamask/abi-utils and ethereum-cryptography, used here for ABI encoding and keccak).
//
//   node audit_takeout.js takeout.json http://127.0.0.1:8545
//
// For every quarter-hour: reads the anchor from the notary on chain (eth_call getAnchor), checks
// the file's roots and totals against it, verifies every leaf and reward proof with
// StandardMerkleTree.verify, and for complete take-outs recomputes C, G, S and every reward from
// the parameters read on chain (paramsVersion). Prints each mismatch; exit code 1 if any.
const { StandardMerkleTree } = require('@openzeppelin/merkle-tree');
const { encode, decode } = require('@metamask/abi-utils');
const { keccak256 } = require('ethereum-cryptography/keccak');

const hex = (u8) => '0x' + Buffer.from(u8).toString('hex');
const keccak = (bytes) => hex(keccak256(bytes));
const selector = (sig) => keccak(Buffer.from(sig)).slice(0, 10);

async function ethCall(rpc, to, data) {
  const res = await fetch(rpc, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_call', params: [{ to, data }, 'latest'] }) });
  const body = await res.json();
  if (body.error) throw new Error(`eth_call failed: ${JSON.stringify(body.error)}`);
  return Buffer.from(body.result.slice(2), 'hex');
}

async function getAnchor(rpc, notary, communityId, qh, version) {
  const args = encode(['bytes32', 'uint64', 'uint32'], [communityId, BigInt(qh), BigInt(version)]);
  const out = await ethCall(rpc, notary, selector('getAnchor(bytes32,uint64,uint32)') + Buffer.from(args).toString('hex'));
  const [r] = decode(['(bytes32,bytes32,uint32,uint32,uint96,uint96,uint96,uint160)'], out);
  return { readingsRoot: hex(r[0]), rewardsRoot: hex(r[1]), leafCount: BigInt(r[2]), paramsVersion: BigInt(r[3]),
           C: BigInt(r[4]), G: BigInt(r[5]), S: BigInt(r[6]), rewardTotal: BigInt(r[7]) };
}

async function getParams(rpc, notary, communityId, version) {
  const args = encode(['bytes32', 'uint32'], [communityId, BigInt(version)]);
  const out = await ethCall(rpc, notary, selector('paramsVersion(bytes32,uint32)') + Buffer.from(args).toString('hex'));
  const [p] = decode(['(uint8,uint256,uint256,uint256,uint256,uint16,uint16,uint64)'], out);
  const n = p.map((x) => BigInt(x));
  return { modelId: n[0], rateConsumption: n[1], rateProduction: n[2], rateNoPeak: n[3], peakMwh: n[4],
           w1Bps: n[5], w2Bps: n[6], effectiveFrom: n[7] };
}

// oracle.md §6-7, BigInt arithmetic (division truncates: floor on non-negative values)
function recompute(readings, p) {
  let C = 0n, G = 0n;
  const m = new Map();
  for (const r of readings) {
    const e = BigInt(r.values[2]);
    const c = r.account === 'consumption' && e > 0n ? e : 0n;
    const g = r.account === 'production' && -e > 0n ? -e : 0n;
    C += c; G += g;
    if (r.wallet) {
      const k = r.wallet.toLowerCase();
      const cur = m.get(k) || { c: 0n, g: 0n, hasC: false };
      cur.c += c; cur.g += g; cur.hasC = cur.hasC || r.account === 'consumption';
      m.set(k, cur);
    }
  }
  const S = C < G ? C : G;
  const rewards = new Map();
  for (const [w, x] of m) {
    const r1 = (C > 0n ? p.rateConsumption * S * x.c / C : 0n) + (G > 0n ? p.rateProduction * S * x.g / G : 0n);
    const r2 = x.hasC && x.c <= p.peakMwh ? p.rateNoPeak : 0n;
    const r = p.modelId === 1n ? r1 : p.modelId === 2n ? r2 : (p.w1Bps * r1 + p.w2Bps * r2) / 10000n;
    if (r > 0n) rewards.set(w, r);
  }
  return { C, G, S, rewards };
}

async function main() {
  const [file, rpc] = process.argv.slice(2);
  if (!file || !rpc) { console.error('usage: node audit_takeout.js TAKEOUT.json RPC_URL'); process.exit(2); }
  const doc = JSON.parse(require('fs').readFileSync(file, 'utf8'));
  const problems = [];
  let leaves = 0;
  for (const a of doc.anchors) {
    const where = `${a.community_id} qh ${a.qh} v${a.version}`;
    if (keccak(Buffer.from(a.community_id, 'utf8')) !== a.communityId) problems.push(`${where}: communityId != keccak256(community_id)`);
    const chain = await getAnchor(rpc, doc.notary, a.communityId, a.qh, a.version);
    const pairs = [['readingsRoot', a.readingsRoot, chain.readingsRoot], ['rewardsRoot', a.rewardsRoot, chain.rewardsRoot],
      ['leafCount', BigInt(a.leafCount), chain.leafCount], ['consumptionMwh', BigInt(a.consumptionMwh), chain.C],
      ['productionMwh', BigInt(a.productionMwh), chain.G], ['sharedMwh', BigInt(a.sharedMwh), chain.S],
      ['rewardTotal', BigInt(a.rewardTotal), chain.rewardTotal], ['paramsVersion', BigInt(a.paramsVersion), chain.paramsVersion]];
    for (const [name, mine, theirs] of pairs) if (mine !== theirs) problems.push(`${where}: ${name} file ${mine} chain ${theirs}`);
    a.readings.forEach((r, i) => {
      leaves++;
      if (!StandardMerkleTree.verify(chain.readingsRoot, ['bytes32', 'uint64', 'int256', 'bytes32'], r.values, r.proof)) {
        problems.push(`${where}: reading ${i} (${r.device_id}) does not prove against the root on chain`);
      }
    });
    a.rewards.forEach((r, i) => {
      if (!StandardMerkleTree.verify(chain.rewardsRoot, ['address', 'uint64', 'uint256'], r.values, r.proof)) {
        problems.push(`${where}: reward ${i} (${r.values[0]}) does not prove against the root on chain`);
      }
    });
    if (a.complete && chain.paramsVersion > 0n) {
      const p = await getParams(rpc, doc.notary, a.communityId, chain.paramsVersion);
      const x = recompute(a.readings, p);
      if (x.C !== chain.C || x.G !== chain.G || x.S !== chain.S) problems.push(`${where}: recomputed C/G/S ${x.C}/${x.G}/${x.S} differ from chain`);
      const stated = new Map(a.rewards.map((r) => [r.values[0].toLowerCase(), BigInt(r.values[2])]));
      for (const [w, amount] of x.rewards) if (stated.get(w) !== amount) problems.push(`${where}: reward of ${w} recomputes to ${amount}, file ${stated.get(w)}`);
      for (const w of stated.keys()) if (!x.rewards.has(w)) problems.push(`${where}: file rewards ${w}, recomputation gives nothing`);
      const values = [...x.rewards].map(([w, amount]) => [w, String(a.qh), String(amount)]);
      const root = values.length ? StandardMerkleTree.of(values, ['address', 'uint64', 'uint256']).root : '0x' + '00'.repeat(32);
      if (root !== chain.rewardsRoot) problems.push(`${where}: recomputed rewards root differs from chain`);
    }
  }
  for (const p of problems) console.log(`MISMATCH ${p}`);
  console.log(`${problems.length ? 'FAILED' : 'OK'}: ${doc.anchors.length} quarter-hours, ${leaves} leaves`);
  process.exit(problems.length ? 1 : 0);
}

main().catch((e) => { console.error(e.message); process.exit(2); });

#!/usr/bin/env node
// Reference cross-check: reads JSON on stdin, answers JSON on stdout, using only
// npm @openzeppelin/merkle-tree (the reference implementation of oracle.md §5 and §8).
//   {"op":"build","types":[...],"values":[[...],...]}  -> {"root":"0x..","proofs":[[..],..],"leafHashes":[..]}
//   {"op":"verify","types":[...],"root":"0x..","items":[{"values":[..],"proof":[..]}]} -> {"ok":[true,..]}
const path = require('path');
const { StandardMerkleTree } = require(path.join(__dirname, '..', '..', 'node_modules', '@openzeppelin', 'merkle-tree'));
const { standardLeafHash } = require(path.join(__dirname, '..', '..', 'node_modules', '@openzeppelin', 'merkle-tree', 'dist', 'hashes'));

let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const req = JSON.parse(input);
  let out;
  if (req.op === 'build') {
    const t0 = process.hrtime.bigint();
    const tree = StandardMerkleTree.of(req.values, req.types);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const proofs = req.noProofs ? [] : req.values.map((_, i) => tree.getProof(i));
    out = { root: tree.root, proofs, buildMs: ms,
            leafHashes: req.noProofs ? [] : req.values.map((v) => standardLeafHash(req.types, v)) };
  } else if (req.op === 'verify') {
    out = { ok: req.items.map((it) => StandardMerkleTree.verify(req.root, req.types, it.values, it.proof)) };
  } else {
    throw new Error(`unknown op ${req.op}`);
  }
  process.stdout.write(JSON.stringify(out));
});

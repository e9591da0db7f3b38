#!/usr/bin/env node
// Compiles contracts/src/**/*.sol with solc-js (npm `solc`, pinned in package.json) and writes
// one JSON artifact per contract (abi, bytecode, deployedBytecode, metadata) to contracts/artifacts/
// or to the folder given with --out. The output is deterministic: the same sources and compiler
// give the same bytes (tests/oracle/test_contracts_build.py recompiles and compares).
//
//   node contracts/compile.js [--out DIR]
"use strict";

const fs = require("fs");
const path = require("path");

const ROOT = path.resolve(__dirname, "..");
const SRC = path.join(__dirname, "src");
const NODE_MODULES = path.join(ROOT, "node_modules");
const solc = require(path.join(NODE_MODULES, "solc"));

// Explicit: solc 0.8.37 defaults to "osaka", which anvil and Besu may not run yet.
const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 200 },
  metadata: { bytecodeHash: "ipfs" },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "metadata"] } },
};

function listSources(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listSources(full));
    else if (entry.name.endsWith(".sol")) out.push(full);
  }
  return out;
}

function findImport(importPath) {
  // Only @openzeppelin/ (from node_modules) and our own src/ files may be imported.
  const candidates = [];
  if (importPath.startsWith("@openzeppelin/")) candidates.push(path.join(NODE_MODULES, importPath));
  else candidates.push(path.join(__dirname, importPath));
  for (const file of candidates) {
    if (fs.existsSync(file)) return { contents: fs.readFileSync(file, "utf8") };
  }
  return { error: `import not found: ${importPath}` };
}

function main() {
  const args = process.argv.slice(2);
  const outIndex = args.indexOf("--out");
  const outDir = outIndex >= 0 ? path.resolve(args[outIndex + 1]) : path.join(__dirname, "artifacts");

  const sources = {};
  for (const file of listSources(SRC)) {
    const key = path.relative(__dirname, file).split(path.sep).join("/"); // e.g. src/Notary.sol
    sources[key] = { content: fs.readFileSync(file, "utf8") };
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));

  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) process.stderr.write(e.formattedMessage + "\n");
  if (errors.length) process.exit(1);

  fs.mkdirSync(outDir, { recursive: true });
  const written = [];
  for (const key of Object.keys(sources)) {
    for (const [name, c] of Object.entries(output.contracts[key] || {})) {
      const artifact = {
        contractName: name,
        sourceName: key,
        compiler: `solc-js ${solc.version()}`,
        evmVersion: SETTINGS.evmVersion,
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
        metadata: c.metadata,
      };
      fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
      written.push(name);
    }
  }
  process.stdout.write(`compiled ${written.join(", ")} with solc ${solc.version()} -> ${outDir}\n`);
}

main();

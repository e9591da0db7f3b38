// Entry of verify.bundle.js (built by scripts/build-settlement-bundle.sh with esbuild): the pieces
// of @openzeppelin/merkle-tree and ethereum-cryptography the statement page needs, as window.LecVerify.
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { keccak256 } from "ethereum-cryptography/keccak";
import { bytesToHex, utf8ToBytes } from "ethereum-cryptography/utils";

window.LecVerify = { StandardMerkleTree, keccak256, bytesToHex, utf8ToBytes };

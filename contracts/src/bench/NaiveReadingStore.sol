// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title NaiveReadingStore: the baseline of bench/chain_gas.py, one stored hash per reading.
/// @notice Not part of the platform: it shows what notarising every reading would cost
/// compared with one Merkle-root anchor per community and quarter-hour.
contract NaiveReadingStore {
    mapping(bytes32 => bool) public stored;

    event ReadingStored(bytes32 indexed readingHash);

    function storeAll(bytes32[] calldata hashes) external {
        for (uint256 i = 0; i < hashes.length; i++) {
            stored[hashes[i]] = true;
            emit ReadingStored(hashes[i]);
        }
    }
}

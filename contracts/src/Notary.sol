// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {CommunityToken} from "./CommunityToken.sol";

/// @title Notary: reward-model parameters, quarter-hour anchors and reward claims (oracle.md §7-§9).
/// @notice One notary serves every community, keyed by communityId = keccak256(utf8(community_id)).
/// Roles: Platform Admin (DEFAULT_ADMIN_ROLE: registers communities and their token),
/// Oracle Admin (sets reward parameters, grants ORACLE_ROLE), the oracle service (ORACLE_ROLE:
/// anchors). Claims are open to anyone: tokens are minted only to the wallet in the proven leaf.
contract Notary is AccessControl {
    bytes32 public constant ORACLE_ADMIN_ROLE = keccak256("ORACLE_ADMIN_ROLE");
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");
    uint64 public constant QH_SECONDS = 900;

    struct Params {
        uint8 modelId;           // 1 self-consumption, 2 no peaks, 3 combined
        uint256 rateConsumption;
        uint256 rateProduction;
        uint256 rateNoPeak;
        uint256 peakMwh;
        uint16 w1Bps;
        uint16 w2Bps;
        uint64 effectiveFrom;    // a qh
    }

    /// What the oracle submits for one (communityId, qh, version).
    struct AnchorInput {
        bytes32 communityId;
        uint64 qh;
        uint32 version;
        bytes32 readingsRoot;
        uint32 leafCount;
        uint96 consumptionMwh;   // C
        uint96 productionMwh;    // G
        uint96 sharedMwh;        // S
        bytes32 rewardsRoot;
        uint160 rewardTotal;
        uint32 paramsVersion;
    }

    /// Stored anchor, packed into four slots.
    struct Anchor {
        bytes32 readingsRoot;
        bytes32 rewardsRoot;
        uint32 leafCount;
        uint32 paramsVersion;
        uint96 consumptionMwh;
        uint96 productionMwh;
        uint96 sharedMwh;
        uint160 rewardTotal;
    }

    struct ClaimInput {
        uint64 qh;
        address wallet;
        uint256 amount;
        bytes32[] proof;
    }

    mapping(bytes32 => CommunityToken) public tokenOf;
    mapping(bytes32 => Params[]) private _params;
    mapping(bytes32 => mapping(uint64 => Anchor[])) private _anchors;
    mapping(bytes32 => mapping(uint64 => mapping(address => uint256))) public claimed;

    event CommunityRegistered(bytes32 indexed communityId, address token);
    event ParamsSet(bytes32 indexed communityId, uint32 indexed version, Params params);
    event Anchored(
        bytes32 indexed communityId, uint64 indexed qh, uint32 indexed version,
        bytes32 readingsRoot, uint32 leafCount, uint96 consumptionMwh, uint96 productionMwh,
        uint96 sharedMwh, bytes32 rewardsRoot, uint160 rewardTotal, uint32 paramsVersion
    );
    event Claimed(bytes32 indexed communityId, uint64 indexed qh, address indexed wallet, uint256 minted, uint256 totalClaimed);
    event ClaimSkipped(bytes32 indexed communityId, uint64 indexed qh, address indexed wallet, uint8 reason);

    error UnknownCommunity(bytes32 communityId);
    error CommunityExists(bytes32 communityId);
    error InvalidParams(string reason);
    error NoParams(bytes32 communityId, uint64 qh);
    error InvalidQh(uint64 qh);
    error BadVersion(uint32 expected, uint32 got);
    error AnchorUnchanged(bytes32 communityId, uint64 qh);
    error WrongParamsVersion(uint32 expected, uint32 got);
    error NotAnchored(bytes32 communityId, uint64 qh, uint32 version);
    error InvalidProof(address wallet, uint64 qh, uint256 amount);
    error NothingToClaim(address wallet, uint64 qh);

    uint8 internal constant SKIP_NOTHING_TO_CLAIM = 1;
    uint8 internal constant SKIP_NOT_MEMBER = 2;

    constructor(address platformAdmin) {
        _grantRole(DEFAULT_ADMIN_ROLE, platformAdmin);
        _setRoleAdmin(ORACLE_ROLE, ORACLE_ADMIN_ROLE);
    }

    // ---- Platform Admin --------------------------------------------------------------

    function registerCommunity(bytes32 communityId, CommunityToken token) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (address(tokenOf[communityId]) != address(0)) revert CommunityExists(communityId);
        tokenOf[communityId] = token;
        emit CommunityRegistered(communityId, address(token));
    }

    // ---- Reward parameters (Oracle Admin sets, anyone reads) ---------------------------

    /// Appends a parameter version; versions are 1-based and effectiveFrom never decreases,
    /// so the version in force for a qh is unambiguous and cannot change for anchored QHs
    /// (a new version applies only from its effectiveFrom on).
    function setParams(bytes32 communityId, Params calldata p) external onlyRole(ORACLE_ADMIN_ROLE) returns (uint32 version) {
        _requireCommunity(communityId);
        if (p.modelId < 1 || p.modelId > 3) revert InvalidParams("modelId must be 1, 2 or 3");
        if (p.effectiveFrom % QH_SECONDS != 0) revert InvalidParams("effectiveFrom must be a multiple of 900");
        if (uint256(p.w1Bps) + p.w2Bps > 10_000) revert InvalidParams("w1Bps + w2Bps must be at most 10000");
        Params[] storage list = _params[communityId];
        if (list.length > 0 && p.effectiveFrom < list[list.length - 1].effectiveFrom) {
            revert InvalidParams("effectiveFrom must not be earlier than the previous version's");
        }
        list.push(p);
        version = uint32(list.length);
        emit ParamsSet(communityId, version, p);
    }

    function paramsCount(bytes32 communityId) external view returns (uint32) {
        return uint32(_params[communityId].length);
    }

    function paramsVersion(bytes32 communityId, uint32 version) external view returns (Params memory) {
        Params[] storage list = _params[communityId];
        if (version == 0 || version > list.length) revert InvalidParams("no such parameter version");
        return list[version - 1];
    }

    /// The latest version with effectiveFrom <= qh, or 0 if none (binary search: effectiveFrom is sorted).
    function paramsVersionAt(bytes32 communityId, uint64 qh) public view returns (uint32) {
        Params[] storage list = _params[communityId];
        uint256 lo = 0;
        uint256 hi = list.length;
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (list[mid].effectiveFrom <= qh) lo = mid + 1;
            else hi = mid;
        }
        return uint32(lo);
    }

    function paramsFor(bytes32 communityId, uint64 qh) external view returns (uint32 version, Params memory p) {
        version = paramsVersionAt(communityId, qh);
        if (version == 0) revert NoParams(communityId, qh);
        p = _params[communityId][version - 1];
    }

    // ---- Anchors (oracle) --------------------------------------------------------------

    function anchor(AnchorInput calldata a) external onlyRole(ORACLE_ROLE) {
        _anchor(a);
    }

    function anchorBatch(AnchorInput[] calldata list) external onlyRole(ORACLE_ROLE) {
        for (uint256 i = 0; i < list.length; i++) {
            _anchor(list[i]);
        }
    }

    function _anchor(AnchorInput calldata a) internal {
        _requireCommunity(a.communityId);
        if (a.qh % QH_SECONDS != 0) revert InvalidQh(a.qh);
        Anchor[] storage versions = _anchors[a.communityId][a.qh];
        uint256 latest = versions.length;
        if (a.version != latest + 1) revert BadVersion(uint32(latest + 1), a.version);
        uint32 inForce = paramsVersionAt(a.communityId, a.qh);
        if (a.paramsVersion != inForce) revert WrongParamsVersion(inForce, a.paramsVersion);
        Anchor memory stored = Anchor({
            readingsRoot: a.readingsRoot,
            rewardsRoot: a.rewardsRoot,
            leafCount: a.leafCount,
            paramsVersion: a.paramsVersion,
            consumptionMwh: a.consumptionMwh,
            productionMwh: a.productionMwh,
            sharedMwh: a.sharedMwh,
            rewardTotal: a.rewardTotal
        });
        if (latest > 0 && _sameContent(versions[latest - 1], stored)) revert AnchorUnchanged(a.communityId, a.qh);
        versions.push(stored);
        emit Anchored(
            a.communityId, a.qh, a.version, a.readingsRoot, a.leafCount, a.consumptionMwh,
            a.productionMwh, a.sharedMwh, a.rewardsRoot, a.rewardTotal, a.paramsVersion
        );
    }

    function _sameContent(Anchor storage x, Anchor memory y) internal view returns (bool) {
        return x.readingsRoot == y.readingsRoot && x.rewardsRoot == y.rewardsRoot && x.leafCount == y.leafCount
            && x.paramsVersion == y.paramsVersion && x.consumptionMwh == y.consumptionMwh
            && x.productionMwh == y.productionMwh && x.sharedMwh == y.sharedMwh && x.rewardTotal == y.rewardTotal;
    }

    function latestVersion(bytes32 communityId, uint64 qh) public view returns (uint32) {
        return uint32(_anchors[communityId][qh].length);
    }

    /// Latest versions of many (communityId, qh) pairs in one call (for restart-safe resubmission).
    function latestVersions(bytes32[] calldata communityIds, uint64[] calldata qhs) external view returns (uint32[] memory out) {
        out = new uint32[](qhs.length);
        for (uint256 i = 0; i < qhs.length; i++) {
            out[i] = uint32(_anchors[communityIds[i]][qhs[i]].length);
        }
    }

    function getAnchor(bytes32 communityId, uint64 qh, uint32 version) external view returns (Anchor memory) {
        Anchor[] storage versions = _anchors[communityId][qh];
        if (version == 0 || version > versions.length) revert NotAnchored(communityId, qh, version);
        return versions[version - 1];
    }

    // ---- Monthly settlement statements (oracle.md §11) ---------------------------------

    /// One version of a community-month's settlement: the statements tree's root and the digest
    /// of every input the settlement used, so anyone can recompute both.
    struct SettlementAnchor {
        bytes32 statementsRoot;
        bytes32 inputsDigest;
        uint64 totalCents;
        uint32 memberCount;
    }

    mapping(bytes32 => mapping(uint32 => SettlementAnchor[])) private _settlements;

    event SettlementAnchored(
        bytes32 indexed communityId, uint32 indexed period, uint32 indexed version,
        bytes32 statementsRoot, bytes32 inputsDigest, uint64 totalCents, uint32 memberCount
    );

    /// Appends version latest+1 of (communityId, period = YYYYMM); same rules as quarter-hour
    /// anchors: versions are consecutive and an unchanged content is refused.
    function anchorSettlement(bytes32 communityId, uint32 period, uint32 version, bytes32 statementsRoot,
                              bytes32 inputsDigest, uint64 totalCents, uint32 memberCount) external onlyRole(ORACLE_ROLE)
    {
        _requireCommunity(communityId);
        if (period % 100 < 1 || period % 100 > 12) revert InvalidParams("period must be YYYYMM");
        SettlementAnchor[] storage versions = _settlements[communityId][period];
        uint256 latest = versions.length;
        if (version != latest + 1) revert BadVersion(uint32(latest + 1), version);
        if (latest > 0) {
            SettlementAnchor storage last = versions[latest - 1];
            if (last.statementsRoot == statementsRoot && last.inputsDigest == inputsDigest
                && last.totalCents == totalCents && last.memberCount == memberCount) {
                revert AnchorUnchanged(communityId, uint64(period));
            }
        }
        versions.push(SettlementAnchor(statementsRoot, inputsDigest, totalCents, memberCount));
        emit SettlementAnchored(communityId, period, version, statementsRoot, inputsDigest, totalCents, memberCount);
    }

    function latestSettlementVersion(bytes32 communityId, uint32 period) external view returns (uint32) {
        return uint32(_settlements[communityId][period].length);
    }

    function getSettlement(bytes32 communityId, uint32 period, uint32 version)
        external view returns (SettlementAnchor memory)
    {
        SettlementAnchor[] storage versions = _settlements[communityId][period];
        if (version == 0 || version > versions.length) revert NotAnchored(communityId, uint64(period), version);
        return versions[version - 1];
    }

    // ---- Claims (anyone; mints to the leaf's wallet) ----------------------------------

    /// Reward leaf of oracle.md §8: OpenZeppelin StandardMerkleTree leaf of [wallet, qh, amount].
    function rewardLeaf(address wallet, uint64 qh, uint256 amount) public pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(wallet, qh, amount))));
    }

    function claim(bytes32 communityId, uint64 qh, address wallet, uint256 amount, bytes32[] calldata proof)
        external returns (uint256 minted)
    {
        CommunityToken token = _requireCommunity(communityId);
        bytes32 root = _latestRewardsRoot(communityId, qh);
        if (!MerkleProof.verifyCalldata(proof, root, rewardLeaf(wallet, qh, amount))) revert InvalidProof(wallet, qh, amount);
        uint256 already = claimed[communityId][qh][wallet];
        if (amount <= already) revert NothingToClaim(wallet, qh);
        minted = _mintClaim(token, communityId, qh, wallet, amount, already);
    }

    /// Claims many rewards of one community; a proof that fails reverts the whole batch, while
    /// claims with nothing left to mint or for a wallet that is no longer a member are skipped
    /// (ClaimSkipped) so that a retried batch is harmless.
    function claimBatch(bytes32 communityId, ClaimInput[] calldata claims) external returns (uint256 totalMinted) {
        CommunityToken token = _requireCommunity(communityId);
        for (uint256 i = 0; i < claims.length; i++) {
            ClaimInput calldata c = claims[i];
            bytes32 root = _latestRewardsRoot(communityId, c.qh);
            if (!MerkleProof.verifyCalldata(c.proof, root, rewardLeaf(c.wallet, c.qh, c.amount))) {
                revert InvalidProof(c.wallet, c.qh, c.amount);
            }
            uint256 already = claimed[communityId][c.qh][c.wallet];
            if (c.amount <= already) {
                emit ClaimSkipped(communityId, c.qh, c.wallet, SKIP_NOTHING_TO_CLAIM);
            } else if (!token.isMember(c.wallet)) {
                emit ClaimSkipped(communityId, c.qh, c.wallet, SKIP_NOT_MEMBER);
            } else {
                totalMinted += _mintClaim(token, communityId, c.qh, c.wallet, c.amount, already);
            }
        }
    }

    function _mintClaim(CommunityToken token, bytes32 communityId, uint64 qh, address wallet, uint256 amount, uint256 already)
        internal returns (uint256 minted)
    {
        minted = amount - already;
        claimed[communityId][qh][wallet] = amount;
        token.mintReward(wallet, minted);
        emit Claimed(communityId, qh, wallet, minted, amount);
    }

    function _latestRewardsRoot(bytes32 communityId, uint64 qh) internal view returns (bytes32) {
        Anchor[] storage versions = _anchors[communityId][qh];
        if (versions.length == 0) revert NotAnchored(communityId, qh, 0);
        return versions[versions.length - 1].rewardsRoot;
    }

    function _requireCommunity(bytes32 communityId) internal view returns (CommunityToken token) {
        token = tokenOf[communityId];
        if (address(token) == address(0)) revert UnknownCommunity(communityId);
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title CommunityToken: the local, non-convertible utility token of ONE energy community.
/// @notice One contract per community. Tokens move only between active members of the
/// community and the community treasury (this contract's own balance). Roles of the seed:
/// Platform Admin (DEFAULT_ADMIN_ROLE: grants every role), Community Admin (members, welcome
/// bonus), Token Admin (fee, incentive, sale rate, treasury funding, ETH withdrawal), the
/// notary (MINTER_ROLE: mints anchored rewards) and members (MEMBER_ROLE, managed only
/// through addMember / removeMember so that the welcome bonus and deactivation rules hold).
contract CommunityToken is ERC20, AccessControl {
    bytes32 public constant COMMUNITY_ADMIN_ROLE = keccak256("COMMUNITY_ADMIN_ROLE");
    bytes32 public constant TOKEN_ADMIN_ROLE = keccak256("TOKEN_ADMIN_ROLE");
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");
    bytes32 public constant MEMBER_ROLE = keccak256("MEMBER_ROLE");
    /// Admin role of MEMBER_ROLE that nobody holds: membership changes only via addMember/removeMember.
    bytes32 public constant MEMBERSHIP_LOCK_ROLE = keccak256("MEMBERSHIP_LOCK_ROLE");

    uint16 public constant MAX_BPS = 10_000;

    /// keccak256(utf8(community_id)), oracle.md §2.
    bytes32 public immutable communityId;

    uint256 public welcomeBonus;     // base units minted to a member on first join
    uint16 public transferFeeBps;    // fee on member transfers, to the treasury
    uint16 public serviceIncentiveBps; // paid from the treasury to the payer of a service
    uint256 public saleRate;         // token base units per wei of ETH; 0 = sale closed

    /// A wallet receives the welcome bonus once, even if it is removed and added again.
    mapping(address => bool) public everJoined;

    event MemberAdded(address indexed wallet, uint256 welcomeBonus);
    event MemberRemoved(address indexed wallet, uint256 balanceReturned);
    event WelcomeBonusSet(uint256 amount);
    event TransferFeeSet(uint16 bps);
    event ServiceIncentiveSet(uint16 bps);
    event SaleRateSet(uint256 rate);
    event ServicePaid(address indexed payer, address indexed payee, uint256 amount, uint256 fee, uint256 incentive, bytes32 indexed serviceRef);
    event TokensPurchased(address indexed buyer, uint256 weiPaid, uint256 tokens);
    event TreasuryFunded(uint256 amount);
    event EthWithdrawn(address indexed to, uint256 amount);

    error NotMember(address wallet);
    error AlreadyMember(address wallet);
    error InvalidBps(uint256 bps);
    error SaleClosed();
    error TreasuryTooLow(uint256 available, uint256 needed);
    error ZeroAmount();
    error EthTransferFailed();

    constructor(string memory name_, string memory symbol_, bytes32 communityId_, address platformAdmin)
        ERC20(name_, symbol_)
    {
        communityId = communityId_;
        _grantRole(DEFAULT_ADMIN_ROLE, platformAdmin);
        _setRoleAdmin(MEMBER_ROLE, MEMBERSHIP_LOCK_ROLE);
    }

    function treasury() public view returns (address) {
        return address(this);
    }

    function isMember(address wallet) public view returns (bool) {
        return hasRole(MEMBER_ROLE, wallet);
    }

    // ---- Community Admin -------------------------------------------------------------

    function setWelcomeBonus(uint256 amount) external onlyRole(COMMUNITY_ADMIN_ROLE) {
        welcomeBonus = amount;
        emit WelcomeBonusSet(amount);
    }

    /// Registers a member; the welcome bonus is minted on the wallet's first join only.
    function addMember(address wallet) external onlyRole(COMMUNITY_ADMIN_ROLE) {
        if (wallet == address(0) || wallet == address(this)) revert NotMember(wallet);
        if (isMember(wallet)) revert AlreadyMember(wallet);
        _grantRole(MEMBER_ROLE, wallet);
        uint256 bonus = 0;
        if (!everJoined[wallet]) {
            everJoined[wallet] = true;
            bonus = welcomeBonus;
            if (bonus > 0) _mint(wallet, bonus);
        }
        emit MemberAdded(wallet, bonus);
    }

    /// Deactivates a member (right to be forgotten): its balance returns to the treasury and
    /// it can no longer send, receive or claim.
    function removeMember(address wallet) external onlyRole(COMMUNITY_ADMIN_ROLE) {
        if (!isMember(wallet)) revert NotMember(wallet);
        uint256 bal = balanceOf(wallet);
        if (bal > 0) super._update(wallet, address(this), bal);
        _revokeRole(MEMBER_ROLE, wallet);
        emit MemberRemoved(wallet, bal);
    }

    // ---- Token Admin -----------------------------------------------------------------

    function setTransferFeeBps(uint16 bps) external onlyRole(TOKEN_ADMIN_ROLE) {
        if (bps > MAX_BPS) revert InvalidBps(bps);
        transferFeeBps = bps;
        emit TransferFeeSet(bps);
    }

    function setServiceIncentiveBps(uint16 bps) external onlyRole(TOKEN_ADMIN_ROLE) {
        if (bps > MAX_BPS) revert InvalidBps(bps);
        serviceIncentiveBps = bps;
        emit ServiceIncentiveSet(bps);
    }

    function setSaleRate(uint256 rate) external onlyRole(TOKEN_ADMIN_ROLE) {
        saleRate = rate;
        emit SaleRateSet(rate);
    }

    /// Mints tokens into the treasury (backs sales and service incentives).
    function fundTreasury(uint256 amount) external onlyRole(TOKEN_ADMIN_ROLE) {
        if (amount == 0) revert ZeroAmount();
        _mint(address(this), amount);
        emit TreasuryFunded(amount);
    }

    function withdrawEth(address payable to, uint256 amount) external onlyRole(TOKEN_ADMIN_ROLE) {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert EthTransferFailed();
        emit EthWithdrawn(to, amount);
    }

    // ---- Notary ----------------------------------------------------------------------

    /// Mints an anchored reward (called by the notary after a Merkle proof is verified).
    function mintReward(address wallet, uint256 amount) external onlyRole(MINTER_ROLE) {
        if (!isMember(wallet)) revert NotMember(wallet);
        _mint(wallet, amount);
    }

    // ---- Members ---------------------------------------------------------------------

    /// A transfer marked as payment for a service: the usual fee goes to the treasury and the
    /// payer receives `serviceIncentiveBps` of `amount` back from the treasury.
    function payForService(address to, uint256 amount, bytes32 serviceRef) external returns (uint256 incentive) {
        if (amount == 0) revert ZeroAmount();
        uint256 fee = _feeOf(amount);
        _update(msg.sender, to, amount);
        incentive = (amount * serviceIncentiveBps) / MAX_BPS;
        uint256 available = balanceOf(address(this));
        if (incentive > available) revert TreasuryTooLow(available, incentive);
        if (incentive > 0) super._update(address(this), msg.sender, incentive);
        emit ServicePaid(msg.sender, to, amount, fee, incentive, serviceRef);
    }

    /// Buys tokens from the treasury at `saleRate` base units per wei (members only).
    function buy() external payable returns (uint256 tokens) {
        if (saleRate == 0) revert SaleClosed();
        if (!isMember(msg.sender)) revert NotMember(msg.sender);
        if (msg.value == 0) revert ZeroAmount();
        tokens = msg.value * saleRate;
        uint256 available = balanceOf(address(this));
        if (tokens > available) revert TreasuryTooLow(available, tokens);
        super._update(address(this), msg.sender, tokens);
        emit TokensPurchased(msg.sender, msg.value, tokens);
    }

    function _feeOf(uint256 amount) internal view returns (uint256) {
        return (amount * transferFeeBps) / MAX_BPS;
    }

    /// Member-to-member transfers only, with the fee to the treasury. Mints (from 0) go to
    /// members or the treasury; internal treasury moves call super._update directly.
    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0)) {
            if (to != address(this) && !isMember(to)) revert NotMember(to);
            super._update(from, to, value);
            return;
        }
        if (!isMember(from)) revert NotMember(from);
        if (!isMember(to)) revert NotMember(to);
        uint256 fee = _feeOf(value);
        if (fee > 0) super._update(from, address(this), fee);
        super._update(from, to, value - fee);
    }
}

"""Community-token operations of the chain client (members, balances, roles, settings).

``TokenMixin`` is mixed into ``oracle.chain.client.NotaryClient``; it relies on the client's ``w3``,
``deployment``, ``notary``, ``_call``, ``_transact`` and ``_sender``.
"""

from __future__ import annotations

from typing import Any

from oracle.chain.tx import ChainError, artifact
from oracle.types import TxResult

# Role names a Platform/Oracle Admin can grant (grant_role, `lec chain grant`).
NOTARY_ROLES = ("DEFAULT_ADMIN_ROLE", "ORACLE_ADMIN_ROLE", "ORACLE_ROLE")
TOKEN_ROLES = ("DEFAULT_ADMIN_ROLE", "COMMUNITY_ADMIN_ROLE", "TOKEN_ADMIN_ROLE")


def contract_at(w3, name: str, address: str | None = None):
    """A web3 contract of our artifacts at ``address`` (or a factory to deploy it)."""
    art = artifact(name)
    if address is None:
        return w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    return w3.eth.contract(address=w3.to_checksum_address(address), abi=art["abi"])


def role_id(name: str) -> bytes:
    """AccessControl role id: keccak256(name), bytes32(0) for DEFAULT_ADMIN_ROLE."""
    from eth_utils import keccak

    return b"\x00" * 32 if name == "DEFAULT_ADMIN_ROLE" else keccak(text=name)


class TokenMixin:
    w3: Any
    deployment: Any
    notary: Any

    def _token(self, community_id: str):
        return contract_at(self.w3, "CommunityToken", self.deployment.token_for(community_id))

    def balance_of(self, community_id: str, wallet: str) -> int:
        return int(self._call(self._token(community_id).functions.balanceOf(self.w3.to_checksum_address(wallet))))

    def is_member(self, community_id: str, wallet: str) -> bool:
        return bool(self._call(self._token(community_id).functions.isMember(self.w3.to_checksum_address(wallet))))

    def add_member(self, community_id: str, wallet: str) -> TxResult:
        token = self._token(community_id)
        data = token.encode_abi("addMember", [self.w3.to_checksum_address(wallet)])
        return self._transact(token.address, data, f"addMember {community_id}")

    def remove_member(self, community_id: str, wallet: str) -> TxResult:
        token = self._token(community_id)
        data = token.encode_abi("removeMember", [self.w3.to_checksum_address(wallet)])
        return self._transact(token.address, data, f"removeMember {community_id}")

    def set_welcome_bonus(self, community_id: str, amount: int) -> TxResult:
        token = self._token(community_id)
        return self._transact(token.address, token.encode_abi("setWelcomeBonus", [amount]),
                              f"setWelcomeBonus {community_id}")

    def add_members(self, community_id: str, wallets: list[str]) -> int:
        """Registers every wallet that is not a member yet (pipelined); returns how many were added."""
        token = self._token(community_id)
        new = []
        for w in dict.fromkeys(self.w3.to_checksum_address(w) for w in wallets):
            if not self._call(token.functions.isMember(w)) and w not in new:
                new.append(w)
        fees = self._sender.fee_fields() if new else {}
        pending = [self._sender.send(token.address, token.encode_abi("addMember", [w]), gas=200_000, fees=fees,
                                     label=f"addMember {community_id}") for w in new]
        self._sender.wait_many(pending)
        return len(new)

    def grant_role(self, role: str, account: str, community_id: str | None = None) -> TxResult:
        """Grants a notary role (community_id None) or a community token role to ``account``."""
        allowed = NOTARY_ROLES if community_id is None else TOKEN_ROLES
        if role not in allowed:
            where = "the notary" if community_id is None else "a community token"
            raise ChainError(f"role {role} cannot be granted on {where}: choose one of {', '.join(allowed)}")
        contract = self.notary if community_id is None else self._token(community_id)
        data = contract.encode_abi("grantRole", [role_id(role), self.w3.to_checksum_address(account)])
        return self._transact(contract.address, data, f"grant {role}")

    def configure_token(self, community_id: str, *, transfer_fee_bps: int | None = None,
                        service_incentive_bps: int | None = None, sale_rate: int | None = None,
                        welcome_bonus: int | None = None, fund_treasury: int | None = None) -> list[TxResult]:
        """Token settings (Token Admin; the welcome bonus needs the Community Admin)."""
        token = self._token(community_id)
        calls = [("setTransferFeeBps", transfer_fee_bps), ("setServiceIncentiveBps", service_incentive_bps),
                 ("setSaleRate", sale_rate), ("setWelcomeBonus", welcome_bonus), ("fundTreasury", fund_treasury)]
        return [self._transact(token.address, token.encode_abi(fn, [value]), f"{fn} {community_id}")
                for fn, value in calls if value is not None]

    def token_settings(self, community_id: str) -> dict[str, Any]:
        """The token's current settings and treasury balance."""
        f = self._token(community_id).functions
        return {"token": self.deployment.token_for(community_id),
                "transferFeeBps": int(self._call(f.transferFeeBps())),
                "serviceIncentiveBps": int(self._call(f.serviceIncentiveBps())),
                "saleRate": int(self._call(f.saleRate())), "welcomeBonus": int(self._call(f.welcomeBonus())),
                "treasury": int(self._call(f.balanceOf(self.deployment.token_for(community_id)))),
                "totalSupply": int(self._call(f.totalSupply()))}

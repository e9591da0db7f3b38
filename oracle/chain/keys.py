"""Where private keys come from: an environment variable or a file, never the command line.

``dev_key(i)`` gives anvil's well-known development accounts (public knowledge, funded only on
a local anvil): use them for the embedded chain and tests, never on a shared network.
"""

from __future__ import annotations

import os
from pathlib import Path

from lec.errors import ConfigError

DEFAULT_KEY_ENV = "LEC_CHAIN_KEY"
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_CHAIN_ID = 31337


def load_key(env_var: str | None = None, file: Path | None = None) -> str:
    """The 0x-hex private key from ``file`` (first line) or from the variable ``env_var``."""
    if file is not None:
        if not file.exists():
            raise ConfigError(f"key file {file} does not exist")
        text = file.read_text().strip().splitlines()
        key = text[0].strip() if text else ""
        source = f"key file {file}"
    else:
        name = env_var or DEFAULT_KEY_ENV
        key = os.environ.get(name, "").strip()
        source = f"environment variable {name}"
        if not key:
            raise ConfigError(f"{source} is empty: export the deployer's private key there "
                              f"(or pass --key-file)")
    body = key.removeprefix("0x")
    if len(body) != 64 or any(c not in "0123456789abcdefABCDEF" for c in body):
        raise ConfigError(f"{source} does not hold a 32-byte hex private key")
    return "0x" + body.lower()


def dev_key(index: int = 0) -> str:
    """Private key of anvil's development account ``index`` (derived from its public mnemonic)."""
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    acct = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + bytes(acct.key).hex()


def address_of(private_key: str) -> str:
    from eth_account import Account

    return Account.from_key(private_key).address

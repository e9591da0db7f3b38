"""The chain client: contracts, token operations, keys, transactions, and `lec chain` commands."""

"""Oracle: quarter-hour commitments, rewards, anchoring on an EVM chain, auditor tools."""

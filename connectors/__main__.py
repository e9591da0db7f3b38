"""``python -m connectors <command>``: the `lec connectors` commands (and `tokens`) without `lec`."""

from connectors.cli import register_channels
from connectors.http.cli import register_tokens
from lec.io.runner import run_standalone

run_standalone(register_channels, register_tokens)

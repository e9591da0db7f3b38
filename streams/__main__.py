"""``python -m streams ...``: the streams commands alone (same as ``lec streams ...``)."""

from lec.io.runner import run_standalone
from streams.cli import register

if __name__ == "__main__":
    run_standalone(register)

#!/usr/bin/env bash
# Sets up a fresh machine and runs the platform's main job on the embedded default:
# every service local (started and stopped by the platform), the SimBench demo community,
# its traffic through MQTT, SFTP and HTTP, streams, lake, KPIs, chain anchors, rewards and an audit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lec demo "$@"

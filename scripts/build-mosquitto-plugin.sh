#!/usr/bin/env bash
# Compiles the Mosquitto client-id plugin (connectors/mqtt/plugin/clientid_prefix.c) into
# .cache/mosquitto/, only when the source changed (needs apt mosquitto-dev libmosquitto-dev gcc).
set -euo pipefail
cd "$(dirname "$0")/.."
src=connectors/mqtt/plugin/clientid_prefix.c
out=.cache/mosquitto
sum=$(sha256sum "$src" | cut -d' ' -f1)
if [ -f "$out/clientid_prefix.so" ] && [ "$(cat "$out/clientid_prefix.sha256" 2>/dev/null)" = "$sum" ]; then
  exit 0
fi
mkdir -p "$out"
gcc -O2 -Wall -Wextra -Werror -fPIC -shared -o "$out/clientid_prefix.so.tmp" "$src"
mv "$out/clientid_prefix.so.tmp" "$out/clientid_prefix.so"
echo "$sum" > "$out/clientid_prefix.sha256"
echo "built $out/clientid_prefix.so"

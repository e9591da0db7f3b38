#!/usr/bin/env bash
# Installs everything the platform and its tests need on a fresh Debian 12 machine:
# Debian packages (servers used by tests), a Python 3.11 venv with pinned packages, npm tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in mosquitto mosquitto-clients mosquitto-dev libmosquitto-dev gcc openssh-server openssh-client postgresql maven chromium; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi
# Debian starts these as system services on install; the platform runs its own on free ports.
for svc in mosquitto postgresql ssh; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || service "$svc" stop >/dev/null 2>&1 || true
done

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[all,test]"

if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund; fi
bash scripts/fetch-jars.sh
bash scripts/build-mosquitto-plugin.sh  # client ids bound to accounts (connectors/mqtt/plugin)
# Keycloak for `lec up --keycloak` and its end-to-end test: 160 MB from Maven Central and `kc.sh build`
# (~80 s of CPU), once per pinned version; a no-op when .cache/jvm/keycloak-server has that build.
.venv/bin/python -m connectors.http.keycloak build
echo "setup done: .venv, node_modules, .cache/jvm"

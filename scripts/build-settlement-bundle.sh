#!/usr/bin/env bash
# Rebuilds lakehouse/settlement/web/verify.bundle.js (committed) from web/entry.js with esbuild:
# @openzeppelin/merkle-tree + ethereum-cryptography from node_modules, for the statement page.
# esbuild is fetched once into .cache/esbuild (npm); the project's node_modules is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
ESBUILD_VERSION=0.24.0
if [ ! -x .cache/esbuild/node_modules/.bin/esbuild ]; then
  mkdir -p .cache/esbuild
  npm install --prefix .cache/esbuild --no-save --no-package-lock "esbuild@${ESBUILD_VERSION}" >/dev/null
fi
NODE_PATH="$PWD/node_modules" .cache/esbuild/node_modules/.bin/esbuild lakehouse/settlement/web/entry.js \
  --bundle --format=iife --minify --platform=browser --target=es2020 --legal-comments=eof \
  --outfile=lakehouse/settlement/web/verify.bundle.js

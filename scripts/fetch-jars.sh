#!/usr/bin/env bash
# Fetches the JVM parts (Kafka, Hadoop, Delta for Spark, Camel, ...) from Maven Central, once.
# Each scripts/jvm/<name>/pom.xml lists one component's artifacts; its jars land in
# .cache/jvm/<name>/ (LEC_JVM_CACHE overrides the root). A stamp holding the pom's digest makes
# a re-run skip a component whose pom did not change.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${LEC_JVM_CACHE:-$PWD/.cache/jvm}
mkdir -p "$root"
command -v mvn >/dev/null 2>&1 || { echo "fetch-jars: mvn not found (apt-get install maven)" >&2; exit 1; }
for pom in scripts/jvm/*/pom.xml; do
  [ -f "$pom" ] || continue
  name=$(basename "$(dirname "$pom")")
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  dest="$root/$name"
  if [ -f "$dest/.stamp" ] && [ "$(cat "$dest/.stamp")" = "$want" ]; then continue; fi
  # Each pom version gets its own folder and $dest becomes a symlink swapped atomically: checkouts
  # sharing this cache with different poms never see a half-replaced jar folder.
  ver="$root/$name.d/${want:0:16}"
  if [ ! -f "$ver/.stamp" ]; then
    echo "fetch-jars: $name (first download is slow)"
    rm -rf "$ver.tmp" && mkdir -p "$ver.tmp"
    mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$ver.tmp" >"$root/$name.log" 2>&1 \
      || { echo "fetch-jars: $name failed, see $root/$name.log" >&2; tail -20 "$root/$name.log" >&2; exit 1; }
    echo "$want" >"$ver.tmp/.stamp"
    mv "$ver.tmp" "$ver"
  fi
  [ -L "$dest" ] || rm -rf "$dest"  # a folder left by an older version of this script
  ln -sfn "$name.d/${want:0:16}" "$dest.lnk.$$" && mv -T "$dest.lnk.$$" "$dest"
done

#!/usr/bin/env bash
# The community.docker collection for the container fleet (its `docker` connection plugin drives hosts by
# `docker exec`, no SSH), taken from the pinned community bundle on PyPI: `ansible` 12.3.0 is the bundle built for
# ansible-core 2.19 (the controller's pin) and ships community.docker 4.8.5. Only that collection is extracted: the
# bundle is 54 MB / 21,488 files of about a hundred collections this project does not use. The wheel is checked
# against its sha256 before anything is taken from it. Real Pis need none of this: SSH is built into ansible-core.
#
# Usage: scripts/fleet-collections.sh [DEST]
#   DEST defaults to $BENCH_CACHE/ansible-collections (BENCH_CACHE default ~/.cache/edge-llm-bench); prints the
#   directory to put in ANSIBLE_COLLECTIONS_PATH. PYTHON (default python3) runs pip. Cached: quick when present.
set -euo pipefail

BUNDLE_VERSION=12.3.0
BUNDLE_SHA256=cd156f82fa87f7a899212b0efa9f7ca3a24d609212de9f78428a572eb01e5414
COLLECTION_VERSION=4.8.5
DEST="${1:-${BENCH_CACHE:-$HOME/.cache/edge-llm-bench}/ansible-collections}"
PY="${PYTHON:-python3}"
MANIFEST="$DEST/ansible_collections/community/docker/MANIFEST.json"

have() {
  [ -f "$MANIFEST" ] && "$PY" -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["collection_info"]["version"] != sys.argv[2])' \
    "$MANIFEST" "$COLLECTION_VERSION"
}

if ! have; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$PY" -m pip download -q --no-deps "ansible==$BUNDLE_VERSION" -d "$tmp" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  whl="$tmp/ansible-$BUNDLE_VERSION-py3-none-any.whl"
  echo "$BUNDLE_SHA256  $whl" | sha256sum -c --quiet - >&2
  rm -rf "$DEST/ansible_collections/community/docker"
  mkdir -p "$DEST"
  "$PY" - "$whl" "$DEST" <<'PYEOF'
import sys
import zipfile

wheel, dest = sys.argv[1:]
prefix = "ansible_collections/community/docker/"
with zipfile.ZipFile(wheel) as z:
    z.extractall(dest, [n for n in z.namelist() if n.startswith(prefix)])
PYEOF
  have || { echo "community.docker $COLLECTION_VERSION not found in ansible $BUNDLE_VERSION" >&2; exit 1; }
fi
echo "$DEST"

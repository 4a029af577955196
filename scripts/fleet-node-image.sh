#!/usr/bin/env bash
# The container fleet's host image: Debian bookworm amd64 (debootstrap, no Docker Hub) with python3, make and a
# venv at /opt/bench-venv holding the toolkit's locked runtime dependencies, and nothing of the toolkit itself:
# the playbook installs that, as it would on a Pi. x86_64 on purpose: inference under arm64 emulation is ~100x
# slower, and the fleet test is about orchestration, shards and merging, not the Pi's speed.
#
# Cached: the rootfs tarball (scripts/build-arm64-base.sh), the wheelhouse under $BENCH_CACHE/wheelhouse-x86_64/<key>
# and the image tag fleet-node:<key>; the key hashes requirements.lock and pyproject's dependencies.
# Usage: scripts/fleet-node-image.sh    (prints the image tag; PYTHON, default .venv/bin/python, builds wheels)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CACHE="${BENCH_CACHE:-$HOME/.cache/edge-llm-bench}"
PY="${PYTHON:-.venv/bin/python}"
BASE=fleet-base:bookworm-amd64

scripts/build-arm64-base.sh --arch amd64 --include make,procps --tag "$BASE" >&2
deps="$("$PY" -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')")"
key="$({ cat requirements.lock; echo "$deps"; docker image inspect --format '{{.Id}}' "$BASE"; echo v1; } | sha256sum | cut -c1-12)"
TAG="fleet-node:$key"
if docker image inspect "$TAG" >/dev/null 2>&1; then echo "$TAG"; exit 0; fi

wh="$CACHE/wheelhouse-x86_64/$key"
if [ ! -e "$wh/.complete" ]; then
  mkdir -p "$wh"
  printf '%s\n' "$deps" setuptools wheel >"$wh/requirements.txt"
  # Same OS and Python as the image (bookworm, 3.11): sdists (rouge-score) are built here, once.
  "$PY" -m pip wheel -q -w "$wh" -c requirements.lock -r "$wh/requirements.txt" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  touch "$wh/.complete"
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp -al "$wh" "$ctx/wheels" 2>/dev/null || cp -a "$wh" "$ctx/wheels"
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BASE
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/bench-venv \\
 && /opt/bench-venv/bin/pip install -q --no-index --find-links /tmp/wheels -r /tmp/wheels/requirements.txt \\
 && rm -rf /tmp/wheels /root/.cache
LABEL io.edge-llm-bench.fleet-node="$key"
CMD ["sleep", "infinity"]
DOCKERFILE
docker build -q --network none -t "$TAG" "$ctx" >&2
echo "$TAG"

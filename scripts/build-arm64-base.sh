#!/usr/bin/env bash
# Build a linux/arm64 Debian bookworm base image without Docker Hub (or, with --arch amd64, a native one: the
# container fleet's hosts, scripts/fleet-node-image.sh).
#
#   debootstrap --foreign (host, native)  ->  second stage in a chroot under qemu-user (binfmt)
#   -> cached rootfs tarball  ->  FROM scratch + ADD rootfs.tar, built for linux/arm64
#   -> a local image labelled linux/arm64 (`docker import --platform` is ignored by engine 20.10).
#
# Quick when cached: the tarball is kept under $BENCH_CACHE/base and the image is not rebuilt when
# an image with the same tarball sha256 (label) already exists.
#
# Usage: scripts/build-arm64-base.sh [--refresh] [--tag IMAGE] [--arch arm64|amd64] [--include PKG,...]
# Env:   BENCH_CACHE (default ~/.cache/edge-llm-bench), DEBIAN_MIRROR (default http://deb.debian.org/debian;
#        point it at snapshot.debian.org/archive/debian/<date>/ for a frozen base), BASE_IMAGE_TAG.
# Needs: root, debootstrap, qemu-user-static, binfmt-support (qemu-aarch64 registered), docker + `docker compose`.
set -euo pipefail

CACHE="${BENCH_CACHE:-$HOME/.cache/edge-llm-bench}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
ARCH=arm64
TAG=""
# Python goes into the base so the image build does not need apt (which is slow under emulation).
# Dockerfile.arm64 installs the same packages itself when its base lacks them (a public debian:bookworm-slim).
INCLUDE="python3,python3-venv,ca-certificates"
REFRESH=0

while [ $# -gt 0 ]; do
  case "$1" in
    --refresh) REFRESH=1 ;;
    --tag) TAG="$2"; shift ;;
    --arch) ARCH="$2"; shift ;;
    --include) INCLUDE="$INCLUDE,$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[build-arm64-base] %s\n' "$*" >&2; }
case "$ARCH" in arm64 | amd64) ;; *) echo "--arch: expected arm64 or amd64, got $ARCH" >&2; exit 2 ;; esac
TAG="${TAG:-${BASE_IMAGE_TAG:-edge-llm-bench/base:bookworm-$ARCH}}"
# Emulation is needed only for a foreign architecture's second stage.
case "$ARCH/$(uname -m)" in arm64/aarch64 | amd64/x86_64) FOREIGN=0 ;; *) FOREIGN=1 ;; esac

BASE_DIR="$CACHE/base"
# The cache key covers everything that changes the rootfs; a new key means a new tarball.
key_parts=("$SUITE" "$MIRROR" "$INCLUDE" minbase v1)
[ "$ARCH" = arm64 ] || key_parts+=("$ARCH")  # arm64 keeps the key it had before --arch existed
KEY="$(printf '%s\n' "${key_parts[@]}" | sha256sum | cut -c1-12)"
TARBALL="$BASE_DIR/$SUITE-$ARCH-$KEY.tar"
mkdir -p "$BASE_DIR"
# One build at a time per cache (CI jobs or engineers sharing a machine): wait for a running one.
exec 9>"$BASE_DIR/.lock"
flock 9

if [ "$REFRESH" = 1 ] || [ ! -s "$TARBALL" ]; then
  [ "$(id -u)" = 0 ] || { echo "debootstrap needs root" >&2; exit 1; }
  command -v debootstrap >/dev/null || { echo "debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
  if [ "$FOREIGN" = 1 ] && ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    echo "qemu-aarch64 binfmt handler not registered: update-binfmts --enable qemu-aarch64" >&2
    exit 1
  fi
  work="$(mktemp -d "$BASE_DIR/work.XXXXXX")"
  cleanup() {
    # Unmount anything debootstrap's second stage left mounted before deleting the tree.
    for m in proc sys dev/pts dev; do
      mountpoint -q "$work/rootfs/$m" 2>/dev/null && umount -l "$work/rootfs/$m" || true
    done
    rm -rf "$work"
  }
  trap cleanup EXIT
  t0=$SECONDS
  log "debootstrap stage 1 ($SUITE $ARCH, minbase + $INCLUDE) from $MIRROR"
  debootstrap --arch="$ARCH" --foreign --variant=minbase --include="$INCLUDE" \
    "$SUITE" "$work/rootfs" "$MIRROR" >"$work/stage1.log" 2>&1 || { tail -20 "$work/stage1.log" >&2; exit 1; }
  log "stage 1 done in $((SECONDS - t0)) s; stage 2 under qemu (takes a few minutes)"
  if [ "$FOREIGN" = 1 ] && ! grep -qs '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    # Without the F (fix-binary) flag the interpreter must be visible inside the chroot.
    cp /usr/bin/qemu-aarch64-static "$work/rootfs/usr/bin/"
  fi
  t1=$SECONDS
  chroot "$work/rootfs" /debootstrap/debootstrap --second-stage >"$work/stage2.log" 2>&1 \
    || { tail -30 "$work/stage2.log" >&2; exit 1; }
  log "stage 2 done in $((SECONDS - t1)) s: $(chroot "$work/rootfs" uname -m)"
  # Slim it down the way the official slim images do, and give apt the usual sources.
  cat >"$work/rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
  chroot "$work/rootfs" apt-get clean
  rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin \
    "$work/rootfs/usr/share/doc/"* "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/locale/"* \
    "$work/rootfs/var/log/"*.log "$work/rootfs/debootstrap" "$work/rootfs/usr/bin/qemu-aarch64-static"
  tar --numeric-owner -C "$work/rootfs" -cf "$TARBALL.part" .
  mv "$TARBALL.part" "$TARBALL"
  sha256sum "$TARBALL" | cut -d' ' -f1 >"$TARBALL.sha256"
  log "rootfs tarball: $TARBALL ($(du -h "$TARBALL" | cut -f1)) in $((SECONDS - t0)) s"
else
  log "cached rootfs tarball: $TARBALL"
fi

[ -s "$TARBALL.sha256" ] || sha256sum "$TARBALL" | cut -d' ' -f1 >"$TARBALL.sha256"
SHA="$(cat "$TARBALL.sha256")"

have="$(docker image inspect --format '{{ index .Config.Labels "io.edge-llm-bench.rootfs.sha256" }} {{ .Os }}/{{ .Architecture }}' "$TAG" 2>/dev/null || true)"
if [ "$have" = "$SHA linux/$ARCH" ]; then
  log "image $TAG is current (linux/$ARCH, rootfs $SHA)"
  exit 0
fi

# `docker import --platform` is ignored by engine 20.10, so label it through a FROM scratch build for linux/$ARCH.
# The build goes through `docker compose build` (which sets the platform); the legacy builder is the fallback.
ctx="$BASE_DIR/ctx"
rm -rf "$ctx"
mkdir -p "$ctx"
ln "$TARBALL" "$ctx/rootfs.tar" 2>/dev/null || cp "$TARBALL" "$ctx/rootfs.tar"
cat >"$ctx/Dockerfile" <<EOF
FROM scratch
ADD rootfs.tar /
LABEL io.edge-llm-bench.rootfs.sha256="$SHA" \\
      org.opencontainers.image.title="Debian $SUITE $ARCH minbase (debootstrap)" \\
      org.opencontainers.image.source="$MIRROR"
ENV LANG=C.UTF-8
CMD ["bash"]
EOF
cat >"$ctx/compose.yaml" <<EOF
services:
  base:
    image: $TAG
    platform: linux/$ARCH
    build:
      context: .
      network: none
EOF
t2=$SECONDS
if docker compose version >/dev/null 2>&1; then
  COMPOSE_BAKE=false docker compose -f "$ctx/compose.yaml" -p edge-llm-bench-base build --quiet base >&2
else
  docker build --quiet --platform "linux/$ARCH" -t "$TAG" "$ctx" >&2
fi
rm -rf "$ctx"
got="$(docker image inspect --format '{{ .Os }}/{{ .Architecture }}' "$TAG")"
[ "$got" = "linux/$ARCH" ] || { echo "image $TAG is labelled $got, not linux/$ARCH" >&2; exit 1; }
log "imported $TAG ($got) in $((SECONDS - t2)) s"

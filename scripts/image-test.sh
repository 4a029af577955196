#!/usr/bin/env bash
# CI image test: build the `core` stage of Dockerfile.arm64 for linux/arm64 under qemu emulation on an x86_64
# Debian machine without Docker Hub, then smoke-test it inside the arm64 container.
#
# Steps (each one timed; everything cacheable is cached under $BENCH_CACHE so a rerun is quick):
#   host-packages  apt: docker.io debootstrap qemu-user-static binfmt-support (only when missing)
#   tools          scripts/lint-tools.sh: the pinned linters in $BENCH_CACHE/tools-venv
#   dockerd        started (log in $BENCH_CACHE/dockerd.log) when no engine answers; left running for reuse
#   binfmt         update-binfmts --enable qemu-aarch64
#   lint           scripts/lint-container.sh (hadolint, shellcheck, compose schema + docker compose config)
#   base           scripts/build-arm64-base.sh (debootstrap arm64 rootfs, cached tarball, linux/arm64 image)
#   wheelhouse     linux/aarch64 wheels for the locked dependencies, downloaded natively on the host (cached);
#                  the image build then installs offline (--network none), so no CA or proxy inside the build
#   build          docker build --platform linux/arm64 --target core (docker layer cache makes reruns quick)
#   selftest       in the arm64 container: uname -m == aarch64, non-root, bench --version, every bench module
#                  imports, `bench validate --spec demo` when that command exists
#
# Usage: scripts/image-test.sh [--no-lint] [--keep-going]
# Env:   BENCH_CACHE (default ~/.cache/edge-llm-bench), BENCH_LOCK (default requirements.lock),
#        IMAGE_TEST_TAG (default edge-llm-bench:core-test), BASE_IMAGE_TAG, DEBIAN_MIRROR.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
CACHE="${BENCH_CACHE:-$HOME/.cache/edge-llm-bench}"
TOOLS="$CACHE/tools-venv"
LOCK="${BENCH_LOCK:-requirements.lock}"
IMAGE="${IMAGE_TEST_TAG:-edge-llm-bench:core-test}"
export BASE_IMAGE_TAG="${BASE_IMAGE_TAG:-edge-llm-bench/base:bookworm-arm64}"
export BENCH_CACHE="$CACHE"
LINT=1
for a in "$@"; do
  case "$a" in
    --no-lint) LINT=0 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done
mkdir -p "$CACHE"

# ---- step timing --------------------------------------------------------------------------------------------
T_START=$SECONDS
STEP_NAMES=()
STEP_SECS=()
STEP_STATUS=()
summary() {
  local rc=$?
  printf '\n== image-test timings ==\n'
  local i
  for i in "${!STEP_NAMES[@]}"; do
    printf '  %-14s %5d s  %s\n' "${STEP_NAMES[$i]}" "${STEP_SECS[$i]}" "${STEP_STATUS[$i]}"
  done
  printf '  %-14s %5d s  %s\n' total "$((SECONDS - T_START))" "$([ "$rc" = 0 ] && echo PASSED || echo "FAILED (rc $rc)")"
}
trap summary EXIT
step() {  # step NAME FUNCTION: run one step, record its time and outcome
  local name="$1" t0=$SECONDS rc=0
  shift
  printf '\n== [%s] %s\n' "$(date +%H:%M:%S)" "$name"
  "$@" || rc=$?
  STEP_NAMES+=("$name")
  STEP_SECS+=("$((SECONDS - t0))")
  STEP_STATUS+=("$([ "$rc" = 0 ] && echo ok || echo "FAILED rc=$rc")")
  [ "$rc" = 0 ] || exit "$rc"
}
need_root() { [ "$(id -u)" = 0 ] || { echo "this step needs root (apt, dockerd, binfmt, debootstrap)" >&2; return 1; }; }

# ---- steps --------------------------------------------------------------------------------------------------
host_packages() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ -e /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  if [ "${#missing[@]}" = 0 ]; then echo "present: dockerd debootstrap qemu-aarch64-static update-binfmts"; return 0; fi
  need_root
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Other jobs on a shared machine may hold the dpkg lock: wait for it instead of failing.
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

tools_venv() {
  scripts/lint-tools.sh
  "$TOOLS/bin/hadolint" --version
  "$TOOLS/bin/shellcheck" --version | sed -n 2p
  docker compose version
}

start_dockerd() {
  if docker info >/dev/null 2>&1; then
    echo "docker engine answers: $(docker version --format '{{.Server.Version}}')"
    return 0
  fi
  need_root
  echo "starting dockerd (log: $CACHE/dockerd.log)"
  nohup dockerd >"$CACHE/dockerd.log" 2>&1 &
  echo "dockerd pid $!"
  local i
  for i in $(seq 60); do
    docker info >/dev/null 2>&1 && { echo "ready after ${i}s"; return 0; }
    sleep 1
  done
  tail -20 "$CACHE/dockerd.log" >&2
  return 1
}

binfmt() {
  if [ "$(uname -m)" = aarch64 ]; then echo "native aarch64, no emulation needed"; return 0; fi
  if ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    need_root
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64
  fi
  grep -E '^(enabled|interpreter|flags)' /proc/sys/fs/binfmt_misc/qemu-aarch64
}

lint() { scripts/lint-container.sh; }

base() { scripts/build-arm64-base.sh; }

# All manylinux tags a bookworm arm64 system (glibc 2.36) accepts; pip does not expand them on its own.
platform_args() {
  local v
  printf -- '--platform\nmanylinux2014_aarch64\n'
  for v in $(seq 17 36); do printf -- '--platform\nmanylinux_2_%s_aarch64\n' "$v"; done
}

WHEELHOUSE=""
wheelhouse() {
  [ -s "$LOCK" ] || { echo "missing $LOCK (pip constraints with exact versions; set BENCH_LOCK to use another)" >&2; return 1; }
  local deps key wh py
  py="$TOOLS/bin/python"
  deps="$("$py" -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')")"
  key="$({ cat "$LOCK"; echo "$deps"; platform_args; echo cp311 v1; } | sha256sum | cut -c1-16)"
  wh="$CACHE/wheelhouse-aarch64/$key"
  WHEELHOUSE="$wh"
  if [ -e "$wh/.complete" ]; then
    echo "cached: $wh ($(find "$wh" -name '*.whl' | wc -l) wheels, $(du -sh "$wh" | cut -f1))"
    return 0
  fi
  mkdir -p "$wh"
  printf '%s\n' "$deps" >"$wh/deps.txt"
  local plat=()
  mapfile -t plat < <(platform_args)
  # Packages published only as sdists (rouge-score, ...) are built natively; only pure-Python ones are accepted.
  local sdist_only=(rouge-score) attempt out name
  for name in "${sdist_only[@]}"; do
    # Only when the lock has it (names compared PEP 503-normalised: rouge_score == rouge-score).
    if tr 'A-Z_.' 'a-z--' <"$LOCK" | grep -q "^${name}=="; then
      "$py" -m pip wheel -q --no-deps -w "$wh" -c "$LOCK" "$name" 2>&1 | grep -v '^WARNING: Location' || true
    fi
  done
  for attempt in 1 2 3 4 5; do
    if out="$("$py" -m pip download -q -d "$wh" --find-links "$wh" "${plat[@]}" --python-version 3.11 \
          --implementation cp --abi cp311 --only-binary=:all: -c "$LOCK" -r "$wh/deps.txt" 'setuptools>=68' wheel 2>&1)"; then
      break
    fi
    # pip names the culprit either way: "No matching distribution found for X" or "Cannot install X... because".
    name="$(printf '%s\n' "$out" | sed -n -e 's/.*No matching distribution found for \([A-Za-z0-9_.-]*\).*/\1/p' \
      -e 's/.*Cannot install \([A-Za-z0-9_.-]*\).*/\1/p' | head -1)"
    if [ -z "$name" ] || [ "$attempt" = 5 ]; then printf '%s\n' "$out" | grep -v '^WARNING: Location' >&2; return 1; fi
    echo "no aarch64 wheel for $name: building it natively (must be pure Python)"
    "$py" -m pip wheel -q --no-deps -w "$wh" -c "$LOCK" "$name"
  done
  if find "$wh" -name '*.whl' | grep -v -E -- '-(none-any|[^-]*aarch64)\.whl$'; then
    echo "the wheels above are neither pure Python nor aarch64" >&2
    return 1
  fi
  touch "$wh/.complete"
  echo "$wh: $(find "$wh" -name '*.whl' | wc -l) wheels, $(du -sh "$wh" | cut -f1)"
}

build() {
  local ctx="$CACHE/image-ctx" version commit
  version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' bench/__init__.py)"
  commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  if [ "$commit" != unknown ] && [ -n "$(git status --porcelain 2>/dev/null | head -1)" ]; then commit="$commit-dirty"; fi
  # A staged context: the files .dockerignore lets through, the lock, and the wheelhouse as .wheelhouse/
  # (hard links, so staging costs nothing). File times are kept, so docker's layer cache still hits.
  rm -rf "$ctx"
  mkdir -p "$ctx"
  cp -a Dockerfile.arm64 .dockerignore pyproject.toml bench "$ctx/"
  local f
  for f in README.md LICENSE; do [ -e "$f" ] && cp -a "$f" "$ctx/"; done
  cp -a "$LOCK" "$ctx/requirements.lock"
  cp -al "$WHEELHOUSE" "$ctx/.wheelhouse" 2>/dev/null || cp -a "$WHEELHOUSE" "$ctx/.wheelhouse"
  find "$ctx/bench" -name __pycache__ -prune -exec rm -rf {} +
  # --network none: the build must not need the network (offline wheelhouse; the base already has python3).
  # PIP_COMPILE=0: no .pyc precompilation (minutes under emulation; the Pi build keeps it).
  docker build --platform linux/arm64 --network none -f "$ctx/Dockerfile.arm64" --target core \
    --build-arg "BASE_IMAGE=$BASE_IMAGE_TAG" \
    --build-arg "PIP_COMPILE=${PIP_COMPILE:-0}" \
    --build-arg "VERSION=$version" \
    --build-arg "GIT_COMMIT=$commit" \
    --build-arg "BUILD_DATE=$(git log -1 --format=%cI 2>/dev/null || echo unknown)" \
    -t "$IMAGE" "$ctx"
  rm -rf "$ctx"
  docker image inspect --format 'image {{.Id}}: {{.Os}}/{{.Architecture}}, {{.Size}} bytes, version={{ index .Config.Labels "org.opencontainers.image.version" }} revision={{ index .Config.Labels "org.opencontainers.image.revision" }}' "$IMAGE"
  [ "$(docker image inspect --format '{{.Os}}/{{.Architecture}}' "$IMAGE")" = linux/arm64 ]
}

selftest() {
  # One container run for all checks (each process start under qemu costs seconds). No network needed.
  docker run --rm --platform linux/arm64 --network none --entrypoint /bin/bash "$IMAGE" -euo pipefail -c '
    arch="$(uname -m)"; echo "uname -m: $arch"; [ "$arch" = aarch64 ]
    echo "user: $(id -un) uid=$(id -u)"; [ "$(id -u)" != 0 ]
    echo "python: $(python --version 2>&1) at $(command -v python)"
    echo "bench --version: $(bench --version)"
    python - <<"EOF"
import importlib, pkgutil, sys, time
import bench
t = time.monotonic()
# Scripts, not modules: __main__ runs the CLI; the judge and candidate of the sandbox are programs that read their
# arguments at start (run as `python -I -S -B FILE`, never imported).
skip = {"bench.__main__", "bench.scoring.child.candidate", "bench.scoring.child.judge"}
names = ["bench"] + [m.name for m in pkgutil.walk_packages(bench.__path__, "bench.")]
failed = []
for name in names:
    if name in skip:
        continue
    try:
        importlib.import_module(name)
    except BaseException as exc:  # report every failure, not just the first
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
done = len(names) - len(skip & set(names)) - len(failed)
print(f"imported {done}/{len(names)} bench modules ({len(skip & set(names))} scripts skipped) in {time.monotonic() - t:.1f} s")
for line in failed:
    print("  IMPORT FAILED", line)
if failed:
    sys.exit(1)
# In the same process (modules already loaded; every interpreter start costs seconds under qemu).
from bench.cli import _register, cli, main
_register()
if "validate" in cli.commands:
    print("bench validate --spec demo:", flush=True)
    main(["validate", "--spec", "demo"])
else:
    print("bench validate: not in this build yet, skipped")
EOF
    echo "selftest: all checks passed"
  '
}

step host-packages host_packages
step tools tools_venv
step dockerd start_dockerd
step binfmt binfmt
[ "$LINT" = 1 ] && step lint lint
step base base
step wheelhouse wheelhouse
step build build
step selftest selftest

#!/usr/bin/env bash
# Cron/systemd wrapper for one nightly rerun. Runs the smoke subset inside the pinned container (or with the local
# environment when BENCH_LOCAL=1), appends to a log that logrotate rotates, and passes the exit code on:
# 0 within tolerance, 1 drift, 2 the run could not be made.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
log_dir="${BENCH_LOG_DIR:-/var/log/edge-llm-bench}"
mkdir -p "$log_dir"
log="$log_dir/nightly.log"
cd "$repo" || exit 2

{
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) nightly start"
    if [ "${BENCH_LOCAL:-0}" = "1" ]; then
        .venv/bin/bench nightly --spec "${BENCH_SPEC:-smoke}"
    else
        docker compose run --rm bench nightly --spec "${BENCH_SPEC:-smoke}" --root /results/nightly
    fi
    rc=$?
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) nightly exit $rc"
    exit "$rc"
} >> "$log" 2>&1

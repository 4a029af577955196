#!/usr/bin/env bash
# Cron/systemd wrapper for one nightly rerun. Runs the smoke subset inside the pinned container (or with the local
# environment when BENCH_LOCAL=1), appends to a log that logrotate rotates, and passes the exit code on:
# 0 within tolerance, 1 drift, 2 no valid comparison (disk, DB, lock, baseline, Ollama, meter, machine busy).
# Exit 1 means drift only: a failure of docker or of this wrapper (which could also exit 1) is reported as 2.
# A busy machine (a backup or update finishing) is waited for up to BENCH_WAIT_QUIET_S seconds first.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
log_dir="${BENCH_LOG_DIR:-/var/log/edge-llm-bench}"
log="$log_dir/nightly.log"
if ! { mkdir -p "$log_dir" && touch "$log"; } 2> /dev/null; then
    echo "nightly: cannot write the log $log" >&2
    exit 2
fi
cd "$repo" || exit 2
line="$(mktemp)" || exit 2
trap 'rm -f "$line"' EXIT
wait_s="${BENCH_WAIT_QUIET_S:-1800}"

{
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) nightly start"
    if [ "${BENCH_LOCAL:-0}" = "1" ]; then
        .venv/bin/bench nightly --spec "${BENCH_SPEC:-smoke}" --wait-quiet-s "$wait_s" | tee "$line"
    else
        docker compose run --rm bench nightly --spec "${BENCH_SPEC:-smoke}" --root /results/nightly \
            --wait-quiet-s "$wait_s" | tee "$line"
    fi
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 1 ] && ! grep -q ': DRIFT vs night ' "$line"; then
        echo "== exit 1 without a drift line (docker or the environment failed): reported as 2"
        rc=2
    elif [ "$rc" -gt 2 ]; then
        rc=2
    fi
    echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) nightly exit $rc"
    exit "$rc"
} >> "$log" 2>&1

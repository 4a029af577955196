#!/usr/bin/env bash
# A fleet host's shards, one after another, started detached by the playbook (fleet/roles/shard): nothing of
# Ansible waits on it. Each shard is the ordinary resumable pipeline: `make reproduce` in the Pi image (compose)
# or `make fleet-shard` from a venv, so a rerun after a kill or a power cut continues where the DB ends.
#
# Usage: scripts/fleet-run.sh HOST_DIR RUNTIME [VENV]
#   HOST_DIR/queue lists shard names; HOST_DIR/specs/<name>.toml their specs; results in HOST_DIR/shards/<name>/.
#   Writes HOST_DIR/runner.pid while running and HOST_DIR/runner.rc (the first failing make's status, or 0) at the end.
set -uo pipefail
dir="$(cd "$1" && pwd)"
runtime="$2"
venv="${3:-.venv}"
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
echo $$ >"$dir/runner.pid"
rm -f "$dir/runner.rc"
sealed() {  # sealed and untouched since (a resumed run re-seals, so the signature is newer than its DB)
  [ -s "$dir/shards/$1/SHA256SUMS.sig" ] && [ "$dir/shards/$1/SHA256SUMS.sig" -nt "$dir/shards/$1/results.db" ]
}
next_shard() {  # the queue is read again after every shard, so a shard moved here joins a running runner
  local name
  while read -r name; do
    if [ -n "$name" ] && ! sealed "$name"; then echo "$name"; return; fi
  done <"$dir/queue"
}
rc=0
last=""
while name="$(next_shard)" && [ -n "$name" ]; do
  [ "$name" != "$last" ] || { echo "error: shard $name ended without being sealed"; rc=1; break; }
  last="$name"
  out="$dir/shards/$name"
  echo "== $(date -u +%FT%TZ) shard $name ($runtime)"
  case "$runtime" in
    venv) make --no-print-directory fleet-shard VENV="$venv" SPEC="$dir/specs/$name.toml" OUT="$out" || rc=$? ;;
    # The runner container sees the results folder as /results: the spec goes there too.
    compose) cp "$dir/specs/$name.toml" "$dir/shards/$name.toml" &&
      make --no-print-directory reproduce SPEC="/results/$name.toml" OUT="$out" || rc=$? ;;
    *) echo "error: unknown runtime $runtime (compose or venv)"; rc=2 ;;
  esac
  [ "$rc" = 0 ] || { echo "error: shard $name stopped with status $rc"; break; }
done
echo "== $(date -u +%FT%TZ) runner done, status $rc"
echo "$rc" >"$dir/runner.rc"

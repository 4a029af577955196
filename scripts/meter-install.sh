#!/usr/bin/env bash
# Install the meter daemon as a systemd service, on the measured Pi or on a separate meter host (the paper's set-up:
# the meter read by another machine, so the Pi does no logging work). `make meter-install` calls this.
#
#   sudo scripts/meter-install.sh --driver ina-serial --opt port=/dev/serial/by-id/usb-...-if00
#   sudo scripts/meter-install.sh --driver joulescope --listen 0.0.0.0:7461   # a meter host
#
# It creates the service user and the query group, a venv in PREFIX with only what bench.meter needs (the
# `meter` extra of pyproject.toml and the driver's `meter-<driver>` extra, versions from requirements.lock; for
# scpi also Debian's libusb-1.0-0), the daemon's config
# /etc/edge-llm-bench/meter.toml (written by `bench meter serve --print-config`, so it is checked like any
# config), for --listen a TLS key pair, and the unit; then starts it and waits for the socket.
# --root DIR writes every file under DIR and changes nothing on the system (no users, no venv, no systemctl).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
driver=""
serve_args=()
pips=()
listen=""
svc_user="bench-meter"
svc_group="bench"
prefix="/opt/edge-llm-bench"
root=""
socket="${BENCH_METER_SOCKET:-/run/edge-llm-bench/meter.sock}"

usage() {
    echo "usage: $0 --driver NAME [--opt key=value ...] [--listen HOST:PORT] [--pip PACKAGE ...]" >&2
    echo "          [--user NAME] [--group NAME] [--prefix DIR] [--root DIR]" >&2
    exit 2
}

while [ "$#" -gt 0 ]; do
    case "$1" in
        --driver) driver="${2:?}"; shift 2 ;;
        --opt) serve_args+=("--opt" "${2:?}"); shift 2 ;;
        --listen) listen="${2:?}"; shift 2 ;;
        --pip) pips+=("${2:?}"); shift 2 ;;
        --user) svc_user="${2:?}"; shift 2 ;;
        --group) svc_group="${2:?}"; shift 2 ;;
        --prefix) prefix="${2:?}"; shift 2 ;;
        --root) root="${2:?}"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$driver" ] || usage
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    echo "run as root (it creates a user, a venv in $prefix and a systemd unit), or pass --root DIR" >&2
    exit 1
fi

etc="$root/etc/edge-llm-bench"
tls_dir="/etc/edge-llm-bench/meter-tls"
unit_dir="$root/etc/systemd/system"
unit="edge-llm-bench-meter.service"

# 1. The user and the group whose members (and the runner's container, via group_add) may query the socket.
if [ -z "$root" ]; then
    getent group "$svc_group" >/dev/null || groupadd --system "$svc_group"
    if ! id -u "$svc_user" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            --gid "$svc_group" --groups dialout "$svc_user"
    fi
fi

# 2. A venv with the toolkit and only the meter's dependencies (a meter host needs no datasets or pandas).
if [ -z "$root" ]; then
    python3 -m venv "$prefix/venv"
    "$prefix/venv/bin/pip" install -q --upgrade 'pip>=24'
    # The meter extra, and the driver's own (meter-scpi, meter-joulescope) when pyproject.toml has one.
    mapfile -t meter_deps < <(python3 -c 'import sys, tomllib; x = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]; print("\n".join(x["meter"] + x.get("meter-" + sys.argv[2], [])))' "$REPO/pyproject.toml" "$driver")
    if [ "$driver" = scpi ] && ! ldconfig -p | grep -q 'libusb-1.0.so'; then
        # PyUSB's backend, for USBTMC; a fresh host has no package lists yet.
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libusb-1.0-0 >/dev/null
    fi
    "$prefix/venv/bin/pip" install -q --no-deps "$REPO"
    "$prefix/venv/bin/pip" install -q -c "$REPO/requirements.lock" "${meter_deps[@]}" "${pips[@]}"
    mkdir -p "$prefix/docs" && cp "$REPO/docs/meter-protocol.md" "$prefix/docs/"
    bench="$prefix/venv/bin/bench"
else
    bench="${BENCH:-$REPO/.venv/bin/bench}"
fi
"$bench" meter drivers

# 3. The daemon's config, checked by the daemon's own parser.
mkdir -p "$etc"
if [ -n "$listen" ]; then
    serve_args+=("--listen" "$listen" "--tls-dir" "$tls_dir")
    if [ ! -e "$root$tls_dir/key.pem" ]; then
        "$bench" meter tls init --dir "$root$tls_dir" --name "meter-$(hostname)"
    fi
    [ -n "$root" ] || chown -R "$svc_user:$svc_group" "$tls_dir"
fi
"$bench" meter serve --driver "$driver" "${serve_args[@]}" --socket "$socket" --group "$svc_group" \
    --log-dir /var/lib/edge-llm-bench-meter/log --print-config >"$etc/meter.toml"
chmod 0644 "$etc/meter.toml"

# 4. The unit, and for a network listener a drop-in that lets it reach the network.
mkdir -p "$unit_dir"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@USER@|$svc_user|g" -e "s|@GROUP@|$svc_group|g" \
    "$REPO/scripts/$unit" >"$unit_dir/$unit"
rm -f "$unit_dir/$unit.d/network.conf" "$unit_dir/$unit.d/usb.conf"
# The network for a listener, or for a LAN instrument (a VISA TCPIP resource, a socket:// URL).
if [ -n "$listen" ] || [[ "${serve_args[*]:-}" == *TCPIP* || "${serve_args[*]:-}" == *socket://* ]]; then
    mkdir -p "$unit_dir/$unit.d"
    printf '[Service]\nPrivateNetwork=no\nRestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\n' >"$unit_dir/$unit.d/network.conf"
fi
# A Joulescope: its udev rule (plugdev may open it) and the plugdev group for the daemon.
if [ "$driver" = joulescope ]; then
    mkdir -p "$unit_dir/$unit.d" "$root/etc/udev/rules.d"
    printf '[Service]\nSupplementaryGroups=plugdev\n' >"$unit_dir/$unit.d/usb.conf"
    install -m 0644 "$REPO/scripts/72-bench-joulescope.rules" "$root/etc/udev/rules.d/72-bench-joulescope.rules"
    if [ -z "$root" ]; then
        getent group plugdev >/dev/null || groupadd --system plugdev
        udevadm control --reload-rules && udevadm trigger --subsystem-match=usb
    fi
fi
if [ -n "$root" ]; then
    echo "wrote $etc/meter.toml and $unit_dir/$unit under $root"
    exit 0
fi

# 5. Start it and wait for the socket (a network listener first needs the runner's certificate pinned).
systemctl daemon-reload
systemctl enable "$unit"
if [ -n "$listen" ] && ! compgen -G "$tls_dir/trusted/*.pem" >/dev/null; then
    echo "installed; before it can start, pin the measured machine's certificate (on that machine, once):"
    echo "  bench meter tls init && bench meter tls export | ssh $(hostname) sudo $bench meter tls trust - --dir $tls_dir"
    echo "  ssh $(hostname) cat $tls_dir/cert.pem | bench meter tls trust -"
    echo "then here: sudo systemctl start $unit; the runner's spec: [meter] socket = \"tls://$listen\""
    exit 0
fi
systemctl restart "$unit"
for _ in $(seq 30); do [ -S "$socket" ] && break; sleep 1; done
if [ ! -S "$socket" ]; then
    echo "the meter socket $socket did not appear; see: journalctl -u $unit" >&2
    exit 1
fi
echo "meter daemon running: $socket (members of '$svc_group' may query it: sudo usermod -aG $svc_group \"\$USER\")"
[ -z "$listen" ] || echo "remote runners: [meter] socket = \"tls://$listen\" (pinned certificates in $tls_dir/trusted)"

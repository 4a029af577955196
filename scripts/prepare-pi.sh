#!/usr/bin/env bash
# Check what a Raspberry Pi 4 needs before `make reproduce`, and report it. Changes nothing unless --fix is
# given, and then asks before each change (y/N). Exit status: 0 all good, 1 something FAILed, 2 usage error.
#
#   scripts/prepare-pi.sh            report only
#   scripts/prepare-pi.sh --fix      offer a fix for each problem, one question at a time
#   scripts/prepare-pi.sh --yes      with --fix: answer yes to every question (unattended)
#
# Checked: 64-bit OS (aarch64 kernel + userland), Pi model, Docker engine + compose plugin + access,
# memory cgroup (needed for compose's memory limits), cooling and throttling (vcgencmd), CPU governor, swap,
# free disk (Docker data root and this checkout), RAM, and the meter daemon's socket.
# Env: BENCH_METER_SOCKET (default /run/edge-llm-bench/meter.sock), MIN_DISK_GB (default 40), GOVERNOR
# (wanted CPU governor, default performance), MIN_SWAP_MB (default 1024).
set -uo pipefail

FIX=0
YES=0
for a in "$@"; do
  case "$a" in
    --fix) FIX=1 ;;
    --yes) YES=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $a" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SOCKET="${BENCH_METER_SOCKET:-/run/edge-llm-bench/meter.sock}"
MIN_DISK_GB="${MIN_DISK_GB:-40}"
GOVERNOR="${GOVERNOR:-performance}"
MIN_SWAP_MB="${MIN_SWAP_MB:-1024}"
FAILS=0
WARNS=0

ok() { printf '  ok    %s\n' "$*"; }
warn() { printf '  WARN  %s\n' "$*"; WARNS=$((WARNS + 1)); }
fail() { printf '  FAIL  %s\n' "$*"; FAILS=$((FAILS + 1)); }
info() { printf '        %s\n' "$*"; }
section() { printf '\n%s\n' "$*"; }
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# ask QUESTION COMMAND...: with --fix, ask and run the command on "y"; without --fix, print the command.
ask() {
  local q="$1"
  shift
  if [ "$FIX" != 1 ]; then info "fix: $*"; return 1; fi
  local reply=n
  if [ "$YES" = 1 ]; then reply=y; else read -r -p "        $q [y/N] " reply </dev/tty || reply=n; fi
  case "$reply" in
    y|Y|yes) info "running: $*"; "$@" ;;
    *) info "skipped"; return 1 ;;
  esac
}

printf 'edge-llm-bench: Raspberry Pi check (%s)\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"

section "Hardware and OS"
model="$( { tr -d '\0' </proc/device-tree/model; } 2>/dev/null || echo unknown)"
case "$model" in
  *"Raspberry Pi 4"*) ok "board: $model" ;;
  unknown) warn "board: unknown (no /proc/device-tree/model); the study used a Raspberry Pi 4 Model B" ;;
  *) warn "board: $model; the study used a Raspberry Pi 4 Model B (results are comparable only on a Pi 4)" ;;
esac
arch="$(uname -m)"
bits="$(getconf LONG_BIT 2>/dev/null || echo '?')"
if [ "$arch" = aarch64 ] && [ "$bits" = 64 ]; then
  ok "64-bit: kernel $arch, userland $bits-bit"
else
  fail "64-bit OS needed (kernel $arch, userland $bits-bit): flash Raspberry Pi OS (64-bit) Lite, Bookworm"
fi
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  case "${VERSION_CODENAME:-}" in
    bookworm|trixie) ok "OS: ${PRETTY_NAME:-$ID}" ;;
    *) warn "OS: ${PRETTY_NAME:-unknown}; tested on Raspberry Pi OS Bookworm (64-bit)" ;;
  esac
fi
info "kernel: $(uname -r)"

section "Memory"
mem_kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
avail_kb="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
mem_mb=$((mem_kb / 1024))
avail_mb=$((avail_kb / 1024))
if [ "$mem_mb" -ge 3500 ]; then
  ok "RAM: $mem_mb MB total, $avail_mb MB available (the study's Pi 4 had 4 GB)"
else
  fail "RAM: $mem_mb MB; the study's Pi 4 had 4 GB, and some of the 28 models need it"
fi
if [ "$avail_mb" -lt 3000 ] && [ "$mem_mb" -ge 3500 ]; then
  warn "only $avail_mb MB available: stop desktop and other services during a run"
fi
swap_kb="$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo)"
swap_mb=$((swap_kb / 1024))
swap_used_mb=$(( (swap_kb - $(awk '/^SwapFree:/ {print $2}' /proc/meminfo)) / 1024 ))
if [ "$swap_mb" -ge "$MIN_SWAP_MB" ]; then
  ok "swap: $swap_mb MB ($swap_used_mb MB used)"
else
  warn "swap: $swap_mb MB; under $MIN_SWAP_MB MB the largest models may be OOM-killed (swapping also distorts energy)"
  if [ -f /etc/dphys-swapfile ]; then
    ask "Set CONF_SWAPSIZE=$MIN_SWAP_MB in /etc/dphys-swapfile and restart dphys-swapfile?" \
      sudo_ sh -c "sed -i 's/^#\\?CONF_SWAPSIZE=.*/CONF_SWAPSIZE=$MIN_SWAP_MB/' /etc/dphys-swapfile && systemctl restart dphys-swapfile" || true
  else
    info "no /etc/dphys-swapfile: create a swap file by hand (fallocate, mkswap, swapon, /etc/fstab)"
  fi
fi
if [ -r /proc/cgroups ] && awk '$1 == "memory" && $4 == 1 {found=1} END {exit !found}' /proc/cgroups; then
  ok "memory cgroup enabled (compose memory limits apply)"
elif [ -r /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  ok "memory cgroup enabled (cgroup v2)"
else
  warn "memory cgroup disabled: Docker ignores the memory limits in compose.yaml"
  cmdline=""
  for f in /boot/firmware/cmdline.txt /boot/cmdline.txt; do [ -f "$f" ] && { cmdline="$f"; break; }; done
  if [ -n "$cmdline" ]; then
    ask "Append 'cgroup_enable=memory cgroup_memory=1' to $cmdline (takes effect after a reboot)?" \
      sudo_ sed -i '1 s/$/ cgroup_enable=memory cgroup_memory=1/' "$cmdline" && info "reboot to apply" || true
  fi
fi

section "Cooling and power"
if command -v vcgencmd >/dev/null; then
  temp="$(vcgencmd measure_temp 2>/dev/null | sed -n "s/temp=\([0-9.]*\).*/\1/p")"
  thr="$(vcgencmd get_throttled 2>/dev/null | sed -n 's/throttled=//p')"
  if [ -n "$temp" ]; then
    if awk -v t="$temp" 'BEGIN {exit !(t < 60)}'; then ok "SoC temperature: $temp C (idle)"
    else warn "SoC temperature: $temp C at idle; add a heatsink/fan, the Pi 4 throttles from 80 C (soft limit 60 C)"; fi
  fi
  if [ -n "$thr" ]; then
    t=$((thr))
    if [ "$t" = 0 ]; then
      ok "throttling: none since boot (get_throttled=$thr)"
    else
      [ $((t & 0x1)) != 0 ] && fail "under-voltage NOW: use the official 5.1 V 3 A supply (and a meter that passes it through)"
      [ $((t & 0x2)) != 0 ] && fail "ARM frequency capped NOW"
      [ $((t & 0x4)) != 0 ] && fail "throttled NOW (too hot): improve cooling and let it cool down"
      [ $((t & 0x8)) != 0 ] && warn "soft temperature limit active NOW"
      [ $((t & 0x10000)) != 0 ] && warn "under-voltage has occurred since boot"
      [ $((t & 0x20000)) != 0 ] && warn "frequency capping has occurred since boot"
      [ $((t & 0x40000)) != 0 ] && warn "throttling has occurred since boot: energy and latency of those answers are not comparable"
      [ $((t & 0x80000)) != 0 ] && warn "soft temperature limit has occurred since boot"
      info "get_throttled=$thr (bits: https://www.raspberrypi.com/documentation/computers/os.html#get_throttled)"
    fi
  fi
  info "arm clock: $(vcgencmd measure_clock arm 2>/dev/null | sed 's/.*=//') Hz"
else
  warn "vcgencmd not found: cannot check temperature or throttling (apt install libraspberrypi-bin, or raspi-utils)"
fi

section "CPU frequency governor"
govs="$(cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor 2>/dev/null | sort -u | tr '\n' ' ')"
if [ -z "$govs" ]; then
  warn "no cpufreq interface"
elif [ "$govs" = "$GOVERNOR " ]; then
  ok "governor: $govs(every core)"
else
  warn "governor: ${govs}; '$GOVERNOR' on every core gives steadier latency and energy (the study does not state its setting; the manifest records yours)"
  ask "Set the '$GOVERNOR' governor on every core now (until reboot)?" \
    sudo_ sh -c "for f in /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor; do echo $GOVERNOR > \$f; done" || true
fi

section "Docker"
if command -v docker >/dev/null; then
  if docker info >/dev/null 2>&1; then
    ok "docker engine $(docker version --format '{{.Server.Version}}' 2>/dev/null), data root $(docker info --format '{{.DockerRootDir}}' 2>/dev/null)"
    darch="$(docker info --format '{{.Architecture}}' 2>/dev/null)"
    [ "$darch" = aarch64 ] || [ "$darch" = arm64 ] || warn "docker reports architecture $darch"
  elif [ -S /var/run/docker.sock ]; then
    fail "docker engine runs but $(id -un) may not use it"
    ask "Add $(id -un) to the docker group (log out and in afterwards)?" sudo_ usermod -aG docker "$(id -un)" || true
  else
    fail "docker engine not running"
    ask "Enable and start docker.service?" sudo_ systemctl enable --now docker || true
  fi
  if docker compose version >/dev/null 2>&1; then
    ok "$(docker compose version)"
  else
    fail "the docker compose plugin (v2) is missing"
    ask "Install docker-compose-plugin with apt (needs Docker's apt repository)?" \
      sudo_ apt-get install -y docker-compose-plugin || true
  fi
else
  fail "docker not installed"
  info "install Docker Engine + compose plugin: https://docs.docker.com/engine/install/debian/ (the convenience"
  info "script get.docker.com works on Raspberry Pi OS 64-bit), then: sudo usermod -aG docker \$USER"
  ask "Install Debian's docker.io and docker-compose with apt now?" \
    sudo_ apt-get install -y docker.io docker-compose || true
fi

section "Disk"
check_disk() {  # check_disk LABEL PATH NEED_GB
  local avail_gb
  avail_gb="$(df -P -BG "$2" 2>/dev/null | awk 'NR == 2 {sub("G", "", $4); print $4}')"
  [ -n "$avail_gb" ] || { warn "$1: cannot read free space of $2"; return; }
  if [ "$avail_gb" -ge "$3" ]; then ok "$1: $avail_gb GB free at $2 (need $3 GB)"
  else fail "$1: $avail_gb GB free at $2, need $3 GB"; fi
}
droot="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)"
[ -d "$droot" ] || droot=/
# The paper's 28 models are about 24 GB, plus the image (~2 GB) and some headroom.
check_disk "docker data root (images + models)" "$droot" "$MIN_DISK_GB"
check_disk "results (this checkout)" "$REPO" 2

section "Power meter"
if [ -S "$SOCKET" ]; then
  if [ -w "$SOCKET" ]; then ok "meter socket: $SOCKET"
  else warn "meter socket $SOCKET is not writable by $(id -un) (the container user is uid 1000)"; fi
else
  fail "no meter socket at $SOCKET: connect the meter, then: make meter-install (see docs/pi.md)"
fi

printf '\n%d failure(s), %d warning(s)\n' "$FAILS" "$WARNS"
[ "$FAILS" = 0 ]

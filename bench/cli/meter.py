"""`bench meter` commands: the daemon, what a person at a terminal asks it, and the TLS keys of a remote meter."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import click

from bench.cli import cli
from bench.meter.address import DEFAULT_SOCKET, ENV_SOCKET

ADDRESS_HELP = f"Unix socket path or tls://HOST:PORT (default: ${ENV_SOCKET}, else {DEFAULT_SOCKET})."


def _parse_opts(pairs: tuple[str, ...]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--opt")
        options[key.strip()] = value
    return options


def _connect(address: str | None):
    from bench.meter.client import connect

    return connect(address)


@cli.group()
def meter() -> None:
    """The power meter daemon and what a person at a terminal asks it."""


@meter.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="A daemon config file (TOML); "
              "the other options override it.")
@click.option("--driver", help="The meter driver by name (`bench meter drivers` lists them and what each needs).")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="Driver option (repeatable).")
@click.option("--socket", "socket_path", default=None, help="Unix socket to serve (default: the resolved address).")
@click.option("--listen", default=None, metavar="HOST:PORT", help="Also serve TLS 1.3 (pinned certificates) here.")
@click.option("--tls-dir", default=None, type=click.Path(file_okay=False), help="Key, certificate, trusted/ peers.")
@click.option("--group", default=None, help="Group owning the socket (mode 0660).")
@click.option("--log-dir", default=None, type=click.Path(file_okay=False), help="Rotating raw sample log.")
@click.option("--buffer-s", default=None, type=float, help="Seconds of samples kept in memory (the query horizon).")
@click.option("--max-buffer-mb", default=None, type=float, help="Most memory the samples may take (default 20).")
@click.option("--gap-s", default=None, type=float, help="Longest hole still integrated (default: 10 periods).")
@click.option("--rotate-mb", default=None, type=float, help="Raw log file size before rotation.")
@click.option("--print-config", is_flag=True, help="Print the resulting config (TOML) instead of serving.")
def serve(config_path: str | None, driver: str | None, opts: tuple[str, ...], socket_path: str | None,
          listen: str | None, tls_dir: str | None, group: str | None, log_dir: str | None, buffer_s: float | None,
          max_buffer_mb: float | None, gap_s: float | None, rotate_mb: float | None, print_config: bool) -> None:
    """Run the meter daemon until SIGTERM (--print-config: write its config file instead, e.g. for systemd)."""
    from bench.meter import config as meter_config
    from bench.meter.address import resolve
    from bench.meter.daemon import serve as run

    if logging.getLogger().level > logging.INFO:
        logging.getLogger("bench.meter").setLevel(logging.INFO)
    given = {k: v for k, v in dict(driver=driver, listen=listen, tls_dir=tls_dir, group=group, log_dir=log_dir,
                                   buffer_s=buffer_s, max_buffer_mb=max_buffer_mb, gap_s=gap_s,
                                   rotate_mb=rotate_mb).items() if v is not None}
    if opts:
        given["options"] = _parse_opts(opts)
    base = meter_config.to_dict(meter_config.load(config_path)) if config_path else {}
    settings = {**base, **given}
    if socket_path or "socket_path" not in settings:
        address = resolve(socket_path)
        if not address.remote:
            settings["socket_path"] = address.path
    if "driver" not in settings:
        raise click.UsageError("give --driver (or --config with a driver)")
    config = meter_config.from_dict(settings, "bench meter serve")
    if print_config:
        click.echo(meter_config.dumps(config), nl=False)
        return
    run(config)


@meter.command()
@click.option("--socket", "address", default=None, help=ADDRESS_HELP)
def status(address: str | None) -> None:
    """Driver, device, rate, counters and log files of a running daemon (JSON)."""
    with _connect(address) as client:
        click.echo(json.dumps({"info": client.info(), "stats": client.stats()}, indent=2))


@meter.command()
@click.option("--socket", "address", default=None, help=ADDRESS_HELP)
@click.option("--last", "last_s", type=float, default=None, help="The window ending now, this many seconds long.")
@click.option("--start-ns", type=int, default=None)
@click.option("--end-ns", type=int, default=None)
@click.option("--wait-s", type=float, default=2.0, show_default=True)
def energy(address: str | None, last_s: float | None, start_ns: int | None, end_ns: int | None, wait_s: float) -> None:
    """Energy of one window: --last SECONDS, or --start-ns/--end-ns on this machine's CLOCK_MONOTONIC."""
    if last_s is not None:
        end_ns = time.monotonic_ns()
        start_ns = end_ns - int(last_s * 1e9)
    if start_ns is None or end_ns is None:
        raise click.UsageError("give --last SECONDS or both --start-ns and --end-ns")
    with _connect(address) as client:
        click.echo(json.dumps(client.energy_details(start_ns, end_ns, wait_s), indent=2))


@meter.command()
@click.option("--socket", "address", default=None, help=ADDRESS_HELP)
@click.option("--seconds", type=float, required=True)
@click.option("--out", type=click.File("w"), default="-", help="CSV destination (default stdout).")
def record(address: str | None, seconds: float, out) -> None:  # noqa: ANN001 - click file
    """Stream raw samples for SECONDS as t_ns,power_w CSV."""
    with _connect(address) as client:
        out.write("t_ns,power_w\n")
        for t_ns, power_w in client.stream(max_s=seconds):
            out.write("".join(f"{t},{p:.7g}\n" for t, p in zip(t_ns, power_w)))


@meter.command()
def drivers() -> None:
    """List the drivers and whether this host can run them."""
    from bench.meter.drivers import DRIVERS

    for name in sorted(DRIVERS):
        cls = DRIVERS[name]
        ok, why = cls.available()
        note = f" ({cls.NOTE})" if cls.NOTE else ""
        click.echo(f"{name:12s} {'ok' if ok else 'unavailable: ' + why}{note}")


# -- TLS keys for a meter on another machine -------------------------------------------------------------------

def _tls_dir(value: str | None) -> Path:
    from bench.meter.address import resolve_tls_dir

    return Path(resolve_tls_dir(value))


TLS_DIR_OPTION = click.option("--dir", "directory", default=None,
                              help="Key directory (default: $BENCH_METER_TLS_DIR, else ~/.config/edge-llm-bench/meter-tls).")


@meter.group("tls")
def tls_group() -> None:
    """Keys for a meter daemon on another machine: mutual TLS 1.3 with pinned certificates."""


@tls_group.command("init")
@TLS_DIR_OPTION
@click.option("--name", default=None, help="Certificate name (default: this host's name).")
@click.option("--force", is_flag=True, help="Replace an existing key (every peer must pin the new one).")
def tls_init(directory: str | None, name: str | None, force: bool) -> None:
    """Create this machine's key and self-signed certificate."""
    import socket

    from bench.meter import tls

    ident = tls.init(_tls_dir(directory), name or socket.gethostname(), force=force)
    click.echo(f"{ident.directory / tls.CERT_FILE}: {ident.fingerprint}")
    click.echo("now pin it on the other machine: bench meter tls export | ssh OTHER bench meter tls trust -")


@tls_group.command("export")
@TLS_DIR_OPTION
def tls_export(directory: str | None) -> None:
    """Print this machine's certificate (PEM) for the other machine to pin."""
    from bench.meter import tls

    ident = tls.load(_tls_dir(directory))
    click.echo((ident.directory / tls.CERT_FILE).read_text("ascii"), nl=False)


@tls_group.command("trust")
@click.argument("cert", type=click.Path(dir_okay=False, allow_dash=True))
@TLS_DIR_OPTION
def tls_trust(cert: str, directory: str | None) -> None:
    """Pin the other machine's certificate (a PEM file, or - for stdin)."""
    from bench.meter import tls

    try:
        pem = sys.stdin.buffer.read() if cert == "-" else Path(cert).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{cert}: cannot read it: {exc.strerror}") from None
    click.echo(f"pinned {tls.trust(_tls_dir(directory), pem, cert)}")


@tls_group.command("show")
@TLS_DIR_OPTION
def tls_show(directory: str | None) -> None:
    """This machine's fingerprint and the pinned peers."""
    from bench.meter import tls

    ident = tls.load(_tls_dir(directory))
    click.echo(f"this machine: {ident.fingerprint}")
    for fp, path in ident.trusted.items():
        click.echo(f"pinned:       {fp}  {path.name}")

"""`bench meter` commands."""

from __future__ import annotations

import json
import logging
import os
import time

import click

from bench.cli import cli

DEFAULT_SOCKET = os.environ.get("BENCH_METER_SOCKET", "/run/edge-llm-bench/meter.sock")


def _parse_opts(pairs: tuple[str, ...]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--opt")
        options[key.strip()] = value
    return options


@cli.group()
def meter() -> None:
    """The power meter daemon and what a person at a terminal asks it."""


@meter.command()
@click.option("--driver", required=True, help="sim, replay, ina-serial, um25c, um34c, scpi, joulescope")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE", help="Driver option (repeatable).")
@click.option("--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True)
@click.option("--group", default=None, help="Group owning the socket (mode 0660).")
@click.option("--log-dir", default=None, type=click.Path(file_okay=False), help="Rotating raw sample log.")
@click.option("--buffer-s", default=3600.0, show_default=True, help="Seconds of samples kept in memory.")
@click.option("--gap-s", default=None, type=float, help="Longest hole still integrated (default: 10 periods).")
@click.option("--rotate-mb", default=64.0, show_default=True, help="Raw log file size before rotation.")
def serve(driver: str, opts: tuple[str, ...], socket_path: str, group: str | None, log_dir: str | None,
          buffer_s: float, gap_s: float | None, rotate_mb: float) -> None:
    """Run the meter daemon until SIGTERM."""
    from bench.meter.daemon import DaemonConfig
    from bench.meter.daemon import serve as run

    if logging.getLogger().level > logging.INFO:
        logging.getLogger("bench.meter").setLevel(logging.INFO)
    run(DaemonConfig(driver, _parse_opts(opts), socket_path, group, log_dir, buffer_s, gap_s, rotate_mb))


@meter.command()
@click.option("--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True)
def status(socket_path: str) -> None:
    """Driver, device, rate, counters and log files of a running daemon (JSON)."""
    from bench.meter.client import connect

    with connect(socket_path) as client:
        click.echo(json.dumps({"info": client.info(), "stats": client.stats()}, indent=2))


@meter.command()
@click.option("--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True)
@click.option("--last", "last_s", type=float, default=None, help="The window ending now, this many seconds long.")
@click.option("--start-ns", type=int, default=None)
@click.option("--end-ns", type=int, default=None)
@click.option("--wait-s", type=float, default=2.0, show_default=True)
def energy(socket_path: str, last_s: float | None, start_ns: int | None, end_ns: int | None, wait_s: float) -> None:
    """Energy of one window: --last SECONDS, or --start-ns/--end-ns on CLOCK_MONOTONIC."""
    from bench.meter.client import connect

    if last_s is not None:
        end_ns = time.monotonic_ns()
        start_ns = end_ns - int(last_s * 1e9)
    if start_ns is None or end_ns is None:
        raise click.UsageError("give --last SECONDS or both --start-ns and --end-ns")
    with connect(socket_path) as client:
        click.echo(json.dumps(client.energy_details(start_ns, end_ns, wait_s), indent=2))


@meter.command()
@click.option("--socket", "socket_path", default=DEFAULT_SOCKET, show_default=True)
@click.option("--seconds", type=float, required=True)
@click.option("--out", type=click.File("w"), default="-", help="CSV destination (default stdout).")
def record(socket_path: str, seconds: float, out) -> None:  # noqa: ANN001 - click file
    """Stream raw samples for SECONDS as t_ns,power_w CSV."""
    from bench.meter.client import connect

    with connect(socket_path) as client:
        out.write("t_ns,power_w\n")
        for t_ns, power_w in client.stream(max_s=seconds):
            out.write("".join(f"{t},{p:.7g}\n" for t, p in zip(t_ns, power_w)))


@meter.command()
def drivers() -> None:
    """List the drivers and whether this host can run them."""
    from bench.meter.drivers import DRIVERS

    for name in sorted(DRIVERS):
        ok, why = DRIVERS[name].available()
        click.echo(f"{name:12s} {'ok' if ok else 'unavailable: ' + why}")

"""``python -m bench.meter --config FILE``: run a meter daemon from its config file.

How every daemon starts, whoever starts it: the runner's local daemon for one run, the systemd unit on a meter
host (``make meter-install``). It imports nothing outside ``bench.meter`` (plus ``bench.errors``/``records``).
"""

from __future__ import annotations

import argparse
import logging
import sys

from bench.errors import BenchError
from bench.meter import config as meter_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.meter", description="Run a bench meter daemon.")
    parser.add_argument("--config", required=True, help="TOML file of DaemonConfig fields (bench/meter/config.py)")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        from bench.meter.daemon import serve

        serve(meter_config.load(args.config))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

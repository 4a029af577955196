"""The power meter: drivers that read an instrument, a daemon that stamps every sample on the host's
CLOCK_MONOTONIC and answers window-energy queries over a Unix socket, and the client the runner uses.

This package imports no other stage (only ``bench.records`` and ``bench.errors``) so it can run as its own
service, apart from the benchmark process.
"""

DAEMON_VERSION = "1.0.0"

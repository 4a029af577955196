"""`bench run` commands."""

from __future__ import annotations

import click

from bench.cli import cli

"""``python -m modelpack.tracking.migrations revision "message"``: write the next revision script (developers)."""

from __future__ import annotations

import argparse

from . import new_revision

parser = argparse.ArgumentParser(prog="python -m modelpack.tracking.migrations")
sub = parser.add_subparsers(dest="command", required=True)
sub.add_parser("revision", help="autogenerate the next revision from schema.py").add_argument("message")
args = parser.parse_args()
print(new_revision(args.message))

"""The command line every generator of a committed file shares: print it, --write it, or --check it is current."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None, *, prog: str, doc: str, out: Path, render: Callable[[], str], make: str) -> int:
    """`prog` prints the text render() makes; --write writes it to `out`; --check exits 1 when `out` differs
    (a unit test runs that). `make` names the make target that writes it."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {out.relative_to(ROOT)}")
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        out.write_text(text)
        print(f"wrote {out.relative_to(ROOT)}")
    elif args.check:
        if not out.exists() or out.read_text() != text:
            print(f"stale: {out.relative_to(ROOT)} (run `make {make}`)", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0

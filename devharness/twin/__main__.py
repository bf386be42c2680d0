"""`python -m devharness.twin`: the live twin of one ScaledApp (see server.py)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from devharness.twin.scenarios import PROFILES, scenario
from devharness.twin.server import TwinConfig, serve


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devharness.twin",
        description="Simulate a ScaledApp's data plane: real pods and sizes in, per-pod /metrics out.",
    )
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig of the control plane (default: $KUBECONFIG)")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True, help="the ScaledApp's name")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="bottleneck-shift", help="load profile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets-file", type=Path, required=True,
                        help="Prometheus file_sd file the twin keeps in sync with its pods")
    parser.add_argument("--trace", type=Path, default=None, help="append one JSON line of ground truth per tick")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds per tick (wall time = model time)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = TwinConfig(
        kubeconfig=args.kubeconfig, namespace=args.namespace, name=args.name, scenario=scenario(args.profile),
        targets_file=args.targets_file, trace_file=args.trace, seed=args.seed, tick_seconds=args.tick,
    )
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())

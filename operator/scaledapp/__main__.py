"""`python -m scaledapp`: run the operator against the current kubeconfig (or in-cluster credentials)."""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import sys

import kopf

from scaledapp import leader, metrics, prometheus


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scaledapp",
        description="The ScaledApp operator: runs each ScaledApp's tiers and widens only its bottleneck.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                       help="watch this namespace (repeatable); default: all namespaces")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=["plain", "full", "json"], default="full",
                        help="log line format; json gives one object per line")
    parser.add_argument("--liveness", default="http://0.0.0.0:8080/healthz", metavar="URL",
                        help="liveness endpoint (empty to disable)")
    parser.add_argument("--metrics-port", type=int, default=metrics.DEFAULT_PORT, metavar="PORT",
                        help="serve the operator's own Prometheus metrics on http://0.0.0.0:PORT/metrics "
                             "(docs/metrics.md; 0 disables)")
    parser.add_argument("--drain-switchover", choices=["auto", "on", "off"], default="auto",
                        help="watch nodes, and move the Postgres write role off a cordoned node before a drain "
                             "evicts the primary (needs list/watch on nodes; auto: on with all namespaces)")
    parser.add_argument("--prometheus-allow", action="append", default=[], metavar="PATTERN",
                        help="a Prometheus host a ScaledApp may name (glob, e.g. '*.svc', or scheme://host:port); "
                             "repeatable; default: any")
    election = parser.add_argument_group("leader election (run several replicas; only the Lease holder acts)")
    election.add_argument("--leader-elect", action="store_true",
                          help="wait for a coordination.k8s.io Lease before starting; exit when it is lost")
    election.add_argument("--lease-name", default="scaledapp-operator", metavar="NAME")
    election.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE", "default"), metavar="NS",
                          help="namespace of the Lease (default: $POD_NAMESPACE, else default)")
    election.add_argument("--identity", default=None, help="this process's holder identity (default: $POD_NAME)")
    election.add_argument("--lease-duration", type=float, default=10.0, metavar="S",
                          help="a standby takes an unrenewed Lease after this long")
    election.add_argument("--renew-deadline", type=float, default=7.0, metavar="S",
                          help="the leader exits when it could not renew for this long (< lease duration)")
    election.add_argument("--retry-period", type=float, default=2.0, metavar="S", help="renew/acquire every S")
    parser.add_argument("--standalone", action="store_true", default=True, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def ensure_user_name() -> None:
    """kopf names this process among its peers after its user, asked of the passwd database, which a numeric uid
    without an entry (the image's 10001, as on any restricted pod) does not have: the operator crashed at start.
    getpass reads $USER before the database."""
    try:
        pwd.getpwuid(os.getuid())
    except KeyError:
        os.environ.setdefault("USER", f"uid-{os.getuid()}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_user_name()
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    import scaledapp.handlers  # (importing registers the handlers)
    if args.drain_switchover == "on" or (args.drain_switchover == "auto" and not args.namespace):
        scaledapp.handlers.watch_nodes()
    prometheus.set_policy(args.prometheus_allow)

    if args.metrics_port:
        metrics.serve(args.metrics_port)
        if args.leader_elect:
            metrics.set_leader(False)  # a standby until leader.run_as_leader holds the Lease

    settings = kopf.OperatorSettings()
    # Named namespaces (the chart's Role-only install): kopf must not list/watch namespaces and CRDs, which
    # are cluster-scoped; it serves exactly the named namespaces and the resources discovery found at start.
    settings.scanning.disabled = bool(args.namespace)

    async def run_kopf() -> None:
        await kopf.operator(
            settings=settings,
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness or None,
        )

    try:
        if args.leader_elect:
            config = leader.LeaseConfig(
                name=args.lease_name, namespace=args.lease_namespace,
                identity=args.identity or leader.default_identity(), lease_duration=args.lease_duration,
                renew_deadline=args.renew_deadline, retry_period=args.retry_period)
            return asyncio.run(leader.run_as_leader(config, run_kopf, liveness=args.liveness or None))
        asyncio.run(run_kopf())
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

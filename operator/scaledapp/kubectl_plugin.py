"""`kubectl scaledapp`: ask a ScaledApp why it did what it did, and steer it (the console script kubectl-scaledapp).

    kubectl scaledapp why NAME        the evidence chain of the latest decision, from the ScaledApp's status
    kubectl scaledapp history NAME    the last decisions (status.history) with their verdicts
    kubectl scaledapp pause NAME      freeze the scaler (annotation scaledapp.dev/paused=true)
    kubectl scaledapp resume NAME     unfreeze it (the annotation is removed)
    kubectl scaledapp recommend NAME  switch to spec.scaling.mode Recommend and show what Auto would do
    kubectl scaledapp auto NAME       switch back to mode Auto

Common flags: -n/--namespace, --context, --kubeconfig. Everything shown is read from the ScaledApp itself (spec,
status, annotations): the operator writes its evidence, windows and cooldown into status, so the answer is the
operator's own, not recomputed. The rendering functions are pure (tests/unit/test_kubectl_plugin.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import pydantic
from pydantic.alias_generators import to_camel

from scaledapp import api, tiers

Manifest = dict[str, Any]


class Client(Protocol):
    def get(self, name: str, namespace: str) -> Manifest: ...
    def patch(self, name: str, namespace: str, body: Manifest) -> Manifest: ...


class KubeClient:
    """The ScaledApp custom resource through the Kubernetes Python client (kubeconfig or in-cluster)."""

    def __init__(self, context: str | None = None, kubeconfig: str | None = None) -> None:
        from kubernetes import client, config

        try:
            config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        self._api = client.CustomObjectsApi()

    @staticmethod
    def default_namespace(context: str | None = None, kubeconfig: str | None = None) -> str:
        from kubernetes import config

        try:
            contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError):
            return "default"
        chosen = next((c for c in contexts if c["name"] == context), current) if context else current
        return str(((chosen or {}).get("context") or {}).get("namespace") or "default")

    def get(self, name: str, namespace: str) -> Manifest:
        obj = self._api.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
        return cast(Manifest, obj)

    def patch(self, name: str, namespace: str, body: Manifest) -> Manifest:
        # A dict body goes as a JSON merge patch: null removes a key.
        obj = self._api.patch_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name, body)
        return cast(Manifest, obj)


# ---------------------------------------------------------------------------------------------- pure helpers


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _ago(text: str | None, now: dt.datetime) -> float | None:
    moment = _time(text)
    return None if moment is None else (now - moment).total_seconds()


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _spec(obj: Manifest) -> api.ScaledAppSpec:
    try:
        return api.parse_spec(obj.get("spec"))
    except pydantic.ValidationError:
        return api.ScaledAppSpec()


def _status(obj: Manifest) -> api.ScaledAppStatus:
    try:
        return api.ScaledAppStatus.model_validate(obj.get("status") or {})
    except pydantic.ValidationError:
        return api.ScaledAppStatus()


def paused(obj: Manifest) -> bool:
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(api.PAUSE_ANNOTATION, "")).lower() == "true"


def _condition(status: api.ScaledAppStatus, kind: str) -> api.Condition | None:
    return next((c for c in status.conditions if c.type == kind), None)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def why_not(tier: str, pressure: float | None, bottleneck: str, status: api.ScaledAppStatus,
            spec: api.ScaledAppSpec, now: dt.datetime) -> str:
    """Why `tier` was not the one chosen, in words."""
    up, down = 1 + spec.scaling.hysteresis, 1 - spec.scaling.hysteresis
    until = status.scaler.ineffective_until.get(tier)
    left = -(_ago(until, now) or 0.0) if until else 0.0
    if pressure is None:
        return "unknown: its signals are missing (never taken as zero), so nothing is decided on it"
    if until and left > 0:
        return f"back-off: widening it did not lower its pressure; skipped until {until} ({left:.0f}s left)"
    if pressure > up:
        chosen = next((e.pressure for e in status.pressures if e.tier == bottleneck), None)
        return (f"hot too, but {bottleneck} is more pressed ({_num(chosen)}; near-ties go to the cheaper rung: "
                f"{' < '.join(tiers.ladder())})")
    if pressure >= down:
        return f"within target: {pressure:.2f} is not above the widen threshold {up:.2f} (1 + hysteresis)"
    return f"calm: {pressure:.2f} is below {down:.2f} (1 - hysteresis)"


def windows_in_force(status: api.ScaledAppStatus, spec: api.ScaledAppSpec, now: dt.datetime) -> list[str]:
    """Cooldown, stabilization windows and back-offs that hold the scaler right now."""
    out: list[str] = []
    scaler, scaling = status.scaler, spec.scaling
    since = _ago(scaler.last_action_time, now)
    if since is not None and since < scaling.cooldown_seconds:
        out.append(f"cooldown: {scaling.cooldown_seconds - since:.0f}s left of {scaling.cooldown_seconds}s "
                   f"(last action at {scaler.last_action_time})")
    window_up = scaling.stabilization.scale_up_seconds
    for tier, hot_since in sorted(scaler.hot_since.items()) if window_up > 0 else ():
        hot_for = _ago(hot_since, now) or 0.0
        state = "met" if hot_for >= window_up else f"{window_up - hot_for:.0f}s to go"
        out.append(f"scale-up window: {tier} hot since {hot_since} ({hot_for:.0f}s of {window_up}s: {state})")
    if scaler.calm_since:
        calm_for = _ago(scaler.calm_since, now) or 0.0
        window_down = scaling.stabilization.scale_down_seconds
        state = "met" if calm_for >= window_down else f"{window_down - calm_for:.0f}s to go"
        out.append(f"scale-down window: every tier calm since {scaler.calm_since} "
                   f"({calm_for:.0f}s of {window_down}s: {state})")
    for tier, until in sorted(scaler.ineffective_until.items()):
        left = -(_ago(until, now) or 0.0)
        if left > 0:
            out.append(f"back-off: {tier} is not widened again until {until} ({left:.0f}s left)")
    last = status.last_action
    if last is not None and last.verdict == "pending":
        out.append(f"verify-after-act: the last step ({last.kind} {last.tier} {last.from_} -> {last.to}) "
                   "is not judged yet; no other step before its verdict")
    return out


def _action_line(action: api.Action) -> str:
    applied = "applied" if action.applied else "recommended only"
    return (f"{action.kind} {action.tier} {action.from_} -> {action.to} at {action.time} ({applied}; "
            f"verdict {action.verdict}; pressure then {_num(action.pressure)}): {action.reason}")


def render_why(obj: Manifest, now: dt.datetime | None = None) -> str:
    """The evidence chain of the latest decision, on one screen."""
    now = now or dt.datetime.now(dt.UTC)
    meta = obj.get("metadata") or {}
    spec, status = _spec(obj), _status(obj)
    scaling = spec.scaling
    lines = [f"ScaledApp {meta.get('namespace', '')}/{meta.get('name', '')}: mode {scaling.mode.value}"
             f"{', PAUSED (' + api.PAUSE_ANNOTATION + ')' if paused(obj) else ''}; every {scaling.interval_seconds}s; "
             f"widen above {1 + scaling.hysteresis:.2f}, narrow below {1 - scaling.hysteresis:.2f}"]
    cond = _condition(status, "Scaling")
    if cond is not None:
        lines.append(f"Latest decision: {cond.reason or '-'}: {cond.message}")
    metrics = _condition(status, "MetricsAvailable")
    if metrics is not None and metrics.status != "True":
        lines.append(f"Metrics: {metrics.reason}: {metrics.message}")
    bottleneck = status.bottleneck
    lines.append(f"Bottleneck: {bottleneck or 'none (no tier above target)'}")
    if not status.pressures:
        lines.append("No evidence in status yet (the scaler has not ticked, or mode is Off).")
    else:
        rows = [["TIER", "PRESSURE", "SIGNAL", "VALUE", "TARGET", "READY", ""]]
        tiers = status.tiers.model_dump(by_alias=True)
        ordered = sorted(status.pressures, key=lambda e: (e.tier != bottleneck, -(e.pressure or -1.0)))
        for e in ordered:
            counts = tiers.get(_status_key(e.tier)) or {}
            ready = f"{counts.get('ready', 0)}/{counts.get('desired', 0)}"
            if counts.get("size"):
                ready += f" ({counts['size']})"
            signal = f"{e.signal} ({e.window})" if e.signal and e.window and e.window != "1m" else e.signal
            rows.append([e.tier, _num(e.pressure), signal or "-", _num(e.value), _num(e.target), ready,
                         "<- bottleneck" if e.tier == bottleneck else ""])
        lines += ["", *_table(rows)]
        chosen = next((e for e in ordered if e.tier == bottleneck), None)
        if chosen is not None and chosen.pressure is not None:
            lines += ["", f"Why {bottleneck}: {chosen.signal} {_num(chosen.value)} vs target {_num(chosen.target)} "
                          f"-> pressure {chosen.pressure:.2f}, the highest above {1 + scaling.hysteresis:.2f} "
                          "of the tiers not in back-off (its worst signal sets a tier's pressure)"]
        others = [e for e in ordered if e.tier != bottleneck]
        if others:
            lines += ["", "Why not the others:"]
            lines += [f"  {e.tier}: {why_not(e.tier, e.pressure, bottleneck, status, spec, now)}" for e in others]
    force = windows_in_force(status, spec, now)
    lines += ["", "In force:" if force else "In force: no cooldown, window or back-off"]
    lines += [f"  {item}" for item in force]
    if status.last_action is not None:
        lines += ["", f"Last action: {_action_line(status.last_action)}"]
    if status.recommendation:
        lines.append(f"Recommendation: {status.recommendation}")
    if status.conditions:
        lines.append("Conditions: " + ", ".join(f"{c.type}={c.status}" + (f" ({c.reason})" if c.reason else "")
                                                for c in status.conditions))
    return "\n".join(lines)


def _status_key(tier: str) -> str:
    """A tier's key in status.tiers, as on the wire (its status_field in camelCase)."""
    known = tiers.known(tier)
    return to_camel(tiers.tier(known).status_field) if known is not None else tier


def render_history(obj: Manifest) -> str:
    status = _status(obj)
    if not status.history:
        return "No decisions yet (status.history is empty)."
    rows = [["TIME", "TIER", "KIND", "FROM", "TO", "APPLIED", "PRESSURE", "VERDICT", "REASON"]]
    for a in status.history:
        rows.append([a.time, a.tier, a.kind, a.from_, a.to, "yes" if a.applied else "no", _num(a.pressure),
                     a.verdict, a.reason])
    return "\n".join(_table(rows))


def render_recommendation(obj: Manifest) -> str:
    """What Auto would do now: the Scaling condition of a Recommend-mode tick, and the standing advice."""
    status = _status(obj)
    cond = _condition(status, "Scaling")
    lines = []
    if cond is not None and cond.reason == "Recommended":
        lines.append(f"Auto would act: {cond.message}")
    elif cond is not None:
        lines.append(f"Auto would hold: {cond.reason}: {cond.message}")
    else:
        lines.append("No decision in status yet.")
    if status.recommendation:
        lines.append(f"Recommendation: {status.recommendation}")
    recent = [a for a in status.history if not a.applied][-3:]
    if recent:
        lines.append("Recent recommendations:")
        lines += [f"  {_action_line(a)}" for a in recent]
    return "\n".join(lines)


def pause_patch(pause: bool) -> Manifest:
    return {"metadata": {"annotations": {api.PAUSE_ANNOTATION: "true" if pause else None}}}


def mode_patch(mode: api.ScalingMode) -> Manifest:
    return {"spec": {"scaling": {"mode": mode.value}}}


def decided_since(obj: Manifest, generation: int) -> bool:
    """Has the scaler decided on (at least) this spec generation? (Its Scaling condition says which.)"""
    cond = _condition(_status(obj), "Scaling")
    return cond is not None and (cond.observed_generation or 0) >= generation


# ---------------------------------------------------------------------------------------------- commands


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kubectl scaledapp",
        description="Ask a ScaledApp why it scaled (or did not), and steer its scaler.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("name", help="the ScaledApp")
    common.add_argument("-n", "--namespace", help="its namespace (default: the context's, else default)")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("--kubeconfig", help="path to the kubeconfig file")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    why = sub.add_parser("why", parents=[common], help="the evidence chain of the latest decision")
    why.add_argument("-o", "--output", choices=["text", "json"], default="text",
                     help="json: the status fields the answer is made of")
    sub.add_parser("history", parents=[common], help="the last decisions and their verdicts")
    sub.add_parser("pause", parents=[common], help=f"freeze the scaler ({api.PAUSE_ANNOTATION}=true)")
    sub.add_parser("resume", parents=[common], help=f"unfreeze the scaler (remove {api.PAUSE_ANNOTATION})")
    rec = sub.add_parser("recommend", parents=[common],
                         help="switch to mode Recommend (decide, apply nothing) and show what Auto would do")
    rec.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                     help="wait this long for the first Recommend-mode decision (default: two scaler intervals)")
    sub.add_parser("auto", parents=[common], help="switch back to mode Auto")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, client: Client, namespace: str, out: Callable[[str], None] = print,
        sleep: Callable[[float], None] = time.sleep) -> int:
    name = args.name
    if args.command == "why":
        obj = client.get(name, namespace)
        if args.output == "json":
            status = obj.get("status") or {}
            keys = ("bottleneck", "pressures", "lastAction", "recommendation", "scaler", "conditions", "tiers")
            out(json.dumps({k: status.get(k) for k in keys} | {"paused": paused(obj)}, indent=2))
        else:
            out(render_why(obj))
    elif args.command == "history":
        out(render_history(client.get(name, namespace)))
    elif args.command in ("pause", "resume"):
        client.patch(name, namespace, pause_patch(args.command == "pause"))
        out(f"scaledapp {namespace}/{name} {'paused' if args.command == 'pause' else 'resumed'}")
    elif args.command == "auto":
        client.patch(name, namespace, mode_patch(api.ScalingMode.AUTO))
        out(f"scaledapp {namespace}/{name}: mode Auto")
    else:  # recommend
        obj = client.patch(name, namespace, mode_patch(api.ScalingMode.RECOMMEND))
        generation = int((obj.get("metadata") or {}).get("generation") or 0)
        out(f"scaledapp {namespace}/{name}: mode Recommend (the scaler decides but applies nothing)")
        wait = args.wait if args.wait is not None else 2.0 * _spec(obj).scaling.interval_seconds + 5
        deadline = time.monotonic() + wait
        while not decided_since(obj, generation) and time.monotonic() < deadline:
            sleep(1.0)
            obj = client.get(name, namespace)
        if not decided_since(obj, generation):
            out(f"(no Recommend-mode decision within {wait:.0f}s; the latest one follows)")
        out(render_recommendation(obj))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        client = KubeClient(args.context, args.kubeconfig)
        namespace = args.namespace or KubeClient.default_namespace(args.context, args.kubeconfig)
        return run(args, client, namespace)
    except Exception as exc:
        status = getattr(exc, "status", None)
        if status == 404:
            print(f"error: scaledapp {args.name} not found", file=sys.stderr)
            return 1
        if status is not None:
            print(f"error: the API server answered {status}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())

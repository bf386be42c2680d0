"""What a builder module declares: the children it builds for a spec, and every child it can ever build.

Each builder module (app.py, cache.py, database.py, workers.py, ...) ends with one `BUILDER`, and
`scaledapp.resources.BUILDERS` lists them: `build_children` and `all_child_kinds` iterate that registry and
know no builder by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from scaledapp import api
from scaledapp.resources.common import Manifest
from scaledapp.resources.names import ChildNames

# (apiVersion, kind, name) of a child: what the reconciler prunes against.
ChildKind = tuple[str, str, str]


@dataclass(frozen=True)
class Build:
    """What every builder is given: the children's names, the namespace and the spec, and the first-apply
    switches (only the database's builder reads them; see `scaledapp.resources.build_children`)."""

    child: ChildNames
    namespace: str
    spec: api.ScaledAppSpec
    hold_primary: bool = False
    write_role_at: str | None = None


@dataclass
class Children:
    """One builder's children for one spec, by the reconciler's apply phase: what pods need exists before
    the pods (ConfigMaps; NetworkPolicies, so pods are fenced from their first moment; Services), then the
    workloads with their disruption budgets."""

    configs: list[Manifest] = field(default_factory=list)
    policies: list[Manifest] = field(default_factory=list)
    services: list[Manifest] = field(default_factory=list)
    workloads: list[Manifest] = field(default_factory=list)

    @classmethod
    def joined(cls, parts: Iterable[Children]) -> Children:
        """Several builders' children, phase by phase (each phase in the builders' order)."""
        out = cls()
        for part in parts:
            out.configs += part.configs
            out.policies += part.policies
            out.services += part.services
            out.workloads += part.workloads
        return out

    def in_order(self) -> list[Manifest]:
        return [*self.configs, *self.policies, *self.services, *self.workloads]


@dataclass(frozen=True)
class Builder:
    """A builder module's declaration. `children`: what it builds for a spec (a disabled tier builds
    nothing); `kinds`: every child it can build for any spec, including ones it built in earlier versions
    (so that the reconciler prunes them)."""

    name: str
    children: Callable[[Build], Children]
    kinds: Callable[[ChildNames], list[ChildKind]]

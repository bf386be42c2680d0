"""kopf's watch streams decoded by orjson instead of the standard library's json.

py-spy of the operator at 200 new ScaledApps (bench/results/scale.md) put a sixth of its busy samples in kopf's
`json.loads` of watch lines: every status change of every child workload comes down a stream as the whole object
(a StatefulSet is some 16 KB of JSON). orjson decodes them in about half the time, and shares the keys' strings
between the objects it makes. kopf has no setting for its decoder, so the module that reads the streams gets
a `json` whose `loads` is orjson's; it is checked first, and a kopf that reads its streams elsewhere is left
as it is (and the operator says so). kube.py decodes the API's answers with orjson itself.
"""

from __future__ import annotations

import importlib
import json
import types

import orjson

# Where kopf 1.45 reads watch lines (`json.loads(line.decode('utf-8'))` in its `stream`): a private module.
KOPF_STREAM_MODULE = "kopf._cogs.clients.api"


def decode_kopf_watches() -> bool:
    """Make kopf's watch streams decode with orjson; False when kopf no longer reads them where expected."""
    try:
        module = importlib.import_module(KOPF_STREAM_MODULE)
    except ImportError:
        return False
    current = getattr(module, "json", None)
    if getattr(current, "loads", None) is orjson.loads:
        return True  # already (a second operator started in the same process: the tests)
    if current is not json:
        return False
    fast = types.ModuleType("json", "The standard library's json, with orjson's loads.")
    fast.__dict__.update({k: v for k, v in vars(json).items() if not k.startswith("__")})
    setattr(fast, "loads", orjson.loads)  # noqa: B010 (a module's attribute; mypy cannot type the assignment)
    setattr(module, "json", fast)  # noqa: B010
    return True

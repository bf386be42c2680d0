"""The simulated twin of the demo service: a pure model (model.py) that a live server, `make demo` and
`make bench` drive. Import the model from here:

    from devharness.twin import Load, TwinModel, TwinParams
"""

from devharness.twin.model import LOADED, SATURATED, Observation, Pod, TwinModel
from devharness.twin.params import Load, TwinParams, load_from_profile

__all__ = ["LOADED", "SATURATED", "Load", "Observation", "Pod", "TwinModel", "TwinParams", "load_from_profile"]

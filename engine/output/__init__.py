"""Outputs to other apps: per-frame ARKit-52 weights over OSC (VRChat / Babble) and Live Link Face.

``arkit`` holds the one mapping table; ``solver`` fits weights to a driven mesh; ``filters`` calibrates
and smooths; ``osc`` and ``livelink`` encode and send; ``stage`` composes them per profile and
``streamer`` runs a stage on its own thread. No Qt anywhere below this package.
"""
from engine.output.arkit import ARKIT_NAMES, TABLE, IctToArkit, unified_names, unified_values
from engine.output.endpoint import Endpoint, OutputError, check_endpoint
from engine.output.filters import Calibration, OneEuroConfig, OneEuroFilter
from engine.output.stage import PROTOCOLS, OutputConfig, OutputStage

__all__ = ["ARKIT_NAMES", "TABLE", "IctToArkit", "unified_names", "unified_values", "Endpoint", "OutputError",
           "check_endpoint", "Calibration", "OneEuroConfig", "OneEuroFilter", "PROTOCOLS", "OutputConfig",
           "OutputStage"]

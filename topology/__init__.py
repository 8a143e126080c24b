"""Single source of truth for the mirroring demo's topology."""

from topology.istio import Istio
from topology.model import DEFAULT, Images, Ports, Thresholds, Topology, TopologyError
from topology.relay import render_relay_conf

__all__ = ["DEFAULT", "Images", "Istio", "Ports", "Thresholds", "Topology", "TopologyError", "render_relay_conf"]

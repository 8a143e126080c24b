"""Pulumi components of the mirroring demo, one module each; objects come from topology.kube."""

from components.backends import HttpbinBackends, HttpbinBackendsArgs
from components.diffproxy import DiffProxy, DiffProxyArgs
from components.istio import IstioInstall, IstioInstallArgs
from components.mirror_rule import MirrorRule, MirrorRuleArgs
from components.namespaces import Namespaces, NamespacesArgs
from components.relay import Relay, RelayArgs
from components.sleep import SleepClient, SleepClientArgs

__all__ = [
    "DiffProxy", "DiffProxyArgs", "HttpbinBackends", "HttpbinBackendsArgs", "IstioInstall",
    "IstioInstallArgs", "MirrorRule", "MirrorRuleArgs", "Namespaces", "NamespacesArgs",
    "Relay", "RelayArgs", "SleepClient", "SleepClientArgs",
]

"""Pulumi components: `MirroredRelease` for any service, and the demo's own pieces.

Objects come from topology.kube, the same dicts `manifests/` is rendered from.
"""

from components.istio import IstioInstall, IstioInstallArgs
from components.mirrored_release import MirroredRelease
from components.namespaces import Namespaces, NamespacesArgs
from components.production import HttpbinApp, HttpbinAppArgs
from components.sleep import SleepClient, SleepClientArgs
from topology.release import (
                              Candidate,
                              DiffProxy,
                              ExistingService,
                              MirroredReleaseArgs,
                              Primary,
                              Relay,
                              ReleaseNames,
                              SecretKeyRef,
                              ServicePort,
                              SharedStore,
)

__all__ = [
    "Candidate", "DiffProxy", "ExistingService", "HttpbinApp", "HttpbinAppArgs", "IstioInstall",
    "IstioInstallArgs", "MirroredRelease", "MirroredReleaseArgs", "Namespaces", "NamespacesArgs",
    "Primary", "Relay", "ReleaseNames", "SecretKeyRef", "ServicePort", "SharedStore", "SleepClient", "SleepClientArgs",
]

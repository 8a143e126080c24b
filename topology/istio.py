"""Which Istio runs the mesh, and what that decides about mirrored copies.

One model for both roads: the Pulumi program installs istiod with this version and passes
`compatibility_version` to its Helm release; the local stack's Envoy gets the
`disable_shadow_host_suffix_append` that istiod of this version would emit.

The Host rule, as istiod's code has it (istio/istio, pilot/pkg/features/pilot.go and the
istiod chart's `files/profile-compatibility-version-*.yaml`):
- before 1.28 istiod never sets `disable_shadow_host_suffix_append`: Envoy appends
  `-shadow` to the copy's host (`svc:80` -> `svc-shadow:80`, `[::1]:80` -> `[::1]-shadow:80`);
- from 1.28 `DISABLE_SHADOW_HOST_SUFFIX` defaults to true and the copy keeps the caller's Host;
- the chart's `compatibilityVersion` 1.27 or lower sets `DISABLE_SHADOW_HOST_SUFFIX=false`,
  restoring the suffix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from topology.errors import TopologyError

SUFFIX_DISABLED_SINCE = (1, 28)
_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?$")
_MINOR = re.compile(r"^(\d+)\.(\d+)$")


def _minor(text: str, key: str, pattern: re.Pattern, example: str) -> tuple[int, int]:
    match = pattern.match(text)
    if not match:
        raise TopologyError(f"{key} must look like {example}, got {text!r}")
    return int(match[1]), int(match[2])


@dataclass(frozen=True)
class Istio:
    version: str = "1.28.1"  # an exact release: a Helm chart version
    compatibility_version: str = ""  # "" or MAJOR.MINOR below `version`, as istiod's chart takes it

    def __post_init__(self) -> None:
        release = _minor(self.version, "istioVersion", _RELEASE, "1.28.1")
        if self.compatibility_version:
            compat = _minor(self.compatibility_version, "istioCompatibilityVersion", _MINOR, "1.27")
            if compat >= release:
                raise TopologyError(
                    f"istioCompatibilityVersion must be below istioVersion {self.version} "
                    f"(it asks istiod to behave like an older release), got {self.compatibility_version!r}")

    @property
    def release(self) -> tuple[int, int]:
        return _minor(self.version, "istioVersion", _RELEASE, "1.28.1")

    @property
    def behaves_like(self) -> tuple[int, int]:
        """The minor release whose defaults istiod applies."""
        if self.compatibility_version:
            return _minor(self.compatibility_version, "istioCompatibilityVersion", _MINOR, "1.27")
        return self.release

    @property
    def disable_shadow_host_suffix_append(self) -> bool:
        # Before 1.28 the field does not exist in istiod; from 1.28 it follows the profile.
        return self.release >= SUFFIX_DISABLED_SINCE and self.behaves_like >= SUFFIX_DISABLED_SINCE

    @property
    def host_form(self) -> str:
        """"shadow" (copies go to `host-shadow[:port]`) or "plain" (the caller's Host)."""
        return "plain" if self.disable_shadow_host_suffix_append else "shadow"

    def istiod_values(self) -> dict:
        """Values for the istiod Helm release."""
        return {"compatibilityVersion": self.compatibility_version} if self.compatibility_version else {}

    def describe(self) -> str:
        compat = f" (compatibilityVersion {self.compatibility_version})" if self.compatibility_version else ""
        return f"Istio {self.version}{compat}"


def shadow_host(host: str) -> str:
    """What Envoy makes of a Host when it appends the suffix: the name part gets `-shadow`,
    the port stays (`a:1` -> `a-shadow:1`, `[::1]:1` -> `[::1]-shadow:1`)."""
    if host.startswith("["):
        end = host.find("]")
        if end != -1:
            return f"{host[:end + 1]}-shadow{host[end + 1:]}"
    name, sep, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    return f"{name}-shadow{sep}{port}"


def copy_host(istio: Istio, caller_host: str) -> str:
    return caller_host if istio.disable_shadow_host_suffix_append else shadow_host(caller_host)

"""Stack configuration -> Topology + ClusterSettings + install options.

Every key is declared, with its type, default and description, in Pulumi.yaml's `config:`
block; `KEYS` below is the program's side of that list, its defaults taken from the
Topology and ClusterSettings defaults (a test holds Pulumi.yaml to them). A bad value stops
the program before any resource is registered, with a message naming the config key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import pulumi

from topology import DEFAULT, Images, Istio, Thresholds, Topology, TopologyError
from topology.kube import ClusterSettings

DEFAULT_ISTIO_VERSION = DEFAULT.istio.version
_CLUSTER = ClusterSettings()
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$")
_IMAGE_KEYS = {"httpbinImage": "httpbin", "relayImage": "relay", "sleepImage": "sleep",
               "diffproxyImage": "diffproxy", "candidateImage": "candidate"}
# TopologyError messages start with the Topology's own name for a value.
_TOPOLOGY_NAMES = {**{f"images.{field}": key for key, field in _IMAGE_KEYS.items()},
                   "thresholds.relative": "thresholdRelative",
                   "thresholds.absolute": "thresholdAbsolute"}


@dataclass(frozen=True)
class Key:
    name: str
    type: str  # as in Pulumi.yaml: string | boolean (floats are strings: there is no float type)
    default: str | bool


def _num(value: float) -> str:
    return f"{value:g}"


KEYS: tuple[Key, ...] = (
    Key("appNamespace", "string", DEFAULT.app_namespace),
    Key("diffyNamespace", "string", DEFAULT.diffy_namespace),
    Key("mirrorPercentage", "string", _num(DEFAULT.mirror_percentage)),
    Key("relay", "boolean", DEFAULT.relay),
    Key("installIstio", "boolean", True),
    Key("istioVersion", "string", DEFAULT_ISTIO_VERSION),
    Key("istioCompatibilityVersion", "string", DEFAULT.istio.compatibility_version),
    Key("kubeContext", "string", ""),
    *(Key(key, "string", getattr(DEFAULT.images, field)) for key, field in _IMAGE_KEYS.items()),
    Key("imagePullPolicy", "string", DEFAULT.images.pull_policy),
    Key("httpbinLauncher", "string", " ".join(_CLUSTER.httpbin_launcher)),
    Key("candidateApp", "string", _CLUSTER.candidate_app),
    Key("thresholdRelative", "string", _num(DEFAULT.thresholds.relative)),
    Key("thresholdAbsolute", "string", _num(DEFAULT.thresholds.absolute)),
    Key("storage", "string", _CLUSTER.storage),
    Key("storageSize", "string", _CLUSTER.storage_size),
    Key("storageClass", "string", _CLUSTER.storage_class),
    Key("prometheus", "string", _CLUSTER.prometheus),
)
_DEFAULTS = {key.name: key.default for key in KEYS}


@dataclass(frozen=True)
class StackSettings:
    topology: Topology
    cluster: ClusterSettings
    install_istio: bool
    istio_version: str
    kube_context: str

    @property
    def istio(self) -> Istio:
        return self.topology.istio


class _Reader:
    """Typed access to declared keys only, defaulting to `KEYS`."""

    def __init__(self, config: pulumi.Config) -> None:
        self._config = config

    def text(self, key: str) -> str:
        value = self._config.get(key)
        return str(_DEFAULTS[key]) if value is None else value

    def flag(self, key: str) -> bool:
        value = self._config.get_bool(key)  # ConfigTypeError names the key
        return bool(_DEFAULTS[key]) if value is None else value

    def number(self, key: str) -> float:
        value = self._config.get_float(key)  # ConfigTypeError names the key
        result = float(_DEFAULTS[key]) if value is None else value
        if not math.isfinite(result):
            raise TopologyError(f"{key} must be a finite number, got {result}")
        return result


def load(config: pulumi.Config) -> StackSettings:
    try:
        return _load(_Reader(config))
    except TopologyError as exc:
        key = _config_key(exc)
        where = f"config {config.full_key(key)}" if key else "stack configuration"
        raise pulumi.RunError(f"invalid {where}: {exc}") from exc


def _load(read: _Reader) -> StackSettings:
    images = Images(**{field: read.text(key) for key, field in _IMAGE_KEYS.items()},
                    pull_policy=read.text("imagePullPolicy"))
    install_istio = read.flag("installIstio")
    istio_version = read.text("istioVersion")
    if install_istio:
        _check(("istioVersion", istio_version), test=lambda v: bool(_VERSION.match(v)),
               problem="must be an exact Istio release such as 1.28.1")
        # One model of the installed Istio: the Helm values below and the mirror Host rule.
        istio = Istio(istio_version, read.text("istioCompatibilityVersion"))
    else:
        # Someone else's Istio: its release is unknown here, so the keys say nothing about it.
        istio = DEFAULT.istio
    topology = Topology(
        app_namespace=read.text("appNamespace"),
        diffy_namespace=read.text("diffyNamespace"),
        mirror_percentage=read.number("mirrorPercentage"),
        relay=read.flag("relay"),
        istio=istio,
        images=images,
        thresholds=Thresholds(relative=read.number("thresholdRelative"),
                              absolute=read.number("thresholdAbsolute")),
    )
    _check(("appNamespace", topology.app_namespace), ("diffyNamespace", topology.diffy_namespace),
           test=lambda v: bool(_DNS_LABEL.match(v)),
           problem="must be a DNS label (lower-case letters, digits, '-', at most 63)")
    _check(*((key, getattr(images, field)) for key, field in _IMAGE_KEYS.items()),
           test=_pinned, problem="must be pinned to a tag or digest, never :latest")
    cluster = ClusterSettings(
        storage=read.text("storage"),
        storage_size=read.text("storageSize"),
        storage_class=read.text("storageClass"),
        httpbin_launcher=tuple(read.text("httpbinLauncher").split()),
        candidate_app=read.text("candidateApp"),
        prometheus=read.text("prometheus"),
    )
    return StackSettings(topology=topology, cluster=cluster, install_istio=install_istio,
                         istio_version=istio_version, kube_context=read.text("kubeContext"))


def _check(*pairs: tuple[str, str], test: Callable[[str], bool], problem: str) -> None:
    for key, value in pairs:
        if not test(value):
            raise TopologyError(f"{key} {problem}, got {value!r}")


def _pinned(image: str) -> bool:
    if "@" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def _config_key(exc: TopologyError) -> str | None:
    name = str(exc).split(" ", 1)[0]
    name = _TOPOLOGY_NAMES.get(name, name)
    return name if name in _DEFAULTS else None

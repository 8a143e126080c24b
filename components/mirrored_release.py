"""`MirroredRelease`: try a release of your own service on a copy of its live traffic.

For a Service that already runs in an Istio mesh, it creates the candidate Deployment from
the given image, the Services the diff proxy calls primary and candidate, the diff proxy,
optionally the nginx relay, and the DestinationRule and VirtualService that mirror the
Service's traffic to the diff proxy. Every object comes from `topology.kube.release_objects`
(the demo's `manifests/` too); the user's Service and Deployment are never created, changed
or deleted, so `pulumi destroy` removes exactly what this component made.

    MirroredRelease("checkout", MirroredReleaseArgs(
        service=ExistingService(name="checkout", namespace="shop", selector={"app": "checkout"},
                                ports=(ServicePort(port=8080),)),
        port=8080, candidate=Candidate(image="registry.example.com/checkout:2.4.0")))

Children are named `<name>-<role>` and parented to the component, so any number of
releases fit in one stack. Arguments are plain values, checked before anything is
registered: a bad one fails `pulumi preview` with a message naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi

from components.objects import create, dependencies, key
from topology import TopologyError
from topology.kube import (
    port_forward_command,
    release_diffproxy_args,
    release_hosts,
    release_mirror_destination,
    release_objects,
)
from topology.release import MirroredReleaseArgs, check

TYPE = "mirrordiff:index:MirroredRelease"


class MirroredRelease(pulumi.ComponentResource):
    def __init__(self, name: str, args: MirroredReleaseArgs,
                 opts: pulumi.ResourceOptions | None = None,
                 aliases: Mapping[str, Sequence[pulumi.Alias]] | None = None) -> None:
        """`aliases`: earlier Pulumi identities of some children, by `Kind/namespace/name`,
        so a stack that made those objects under other names keeps them (the demo's)."""
        try:
            check(name, args)
            _check_diffproxy_flags(release_diffproxy_args(name, args))
        except TopologyError as exc:
            raise pulumi.RunError(f"invalid MirroredRelease {name!r}: {exc}") from exc
        super().__init__(TYPE, name, None, opts)
        objects = release_objects(name, args)
        deps = dependencies(opts)

        previous = aliases or {}

        def child(role: str, obj: dict, *after: pulumi.Resource,
                  patch: bool = False) -> pulumi.CustomResource:
            child_opts = pulumi.ResourceOptions(parent=self, depends_on=[*deps, *after],
                                                aliases=list(previous.get(key(obj), ())) or None)
            return create(obj, child_opts, name=f"{name}-{role}", patch=patch)

        self.primary_service = child("primary", objects.primary_service)
        candidate, candidate_service = objects.candidate
        self.candidate = child("candidate", candidate)
        self.candidate_service = child("candidate", candidate_service)
        *claim, proxy, proxy_service = objects.diffproxy
        claims = [child("diffproxy-results", c) for c in claim]
        self.diffproxy = child("diffproxy", proxy, *claims)
        self.diffproxy_service = child("diffproxy", proxy_service)
        mirror_target: list[pulumi.Resource] = [self.diffproxy_service]
        self.relay: pulumi.CustomResource | None = None
        if objects.relay:
            config, relay = objects.relay
            relay_config = child("relay", config)
            # nginx resolves its upstream at start: the diff proxy's Service must exist.
            self.relay = child("relay", relay, relay_config, self.diffproxy_service)
            mirror_target.append(self.relay)
        self.destination_rule = child("mirror", objects.destination_rule)
        # A VirtualService naming subsets before its DestinationRule exists makes Envoy answer
        # 503; one mirroring to a target not yet there loses the copies.
        self.virtual_service = child("mirror", objects.virtual_service, self.destination_rule,
                                     *mirror_target, patch=args.adopt_virtual_service is not None)
        # Prometheus and Grafana (`monitoring`): watch the diff proxy once it exists.
        self.monitoring = [child(f"monitoring-{obj['kind'].lower()}", obj, self.diffproxy_service)
                           for obj in objects.monitoring]

        hosts = release_hosts(name, args)
        destination = release_mirror_destination(name, args)
        names = args.names.resolve(name)
        self.service_host = args.service.host
        self.primary_host = hosts["primary"]
        self.candidate_host = hosts["candidate"]
        self.diffproxy_host = hosts["diffproxy"]
        self.mirror_target = f"{destination['host']}:{destination['port']['number']}"
        self.mirror_percentage = float(args.mirror_percentage)
        self.console_port_forward = port_forward_command(
            args.namespace, names.diffproxy, args.diffproxy.console_port)
        self.register_outputs({
            "serviceHost": self.service_host, "primaryHost": self.primary_host,
            "candidateHost": self.candidate_host, "diffProxyHost": self.diffproxy_host,
            "mirrorTarget": self.mirror_target, "mirrorPercentage": self.mirror_percentage,
            "consolePortForward": self.console_port_forward,
        })


def _check_diffproxy_flags(args: list[str]) -> None:
    """The diff proxy's own parser, so a flag it would reject at start fails the preview."""
    from diffproxy.settings import SettingsError, load

    try:
        load(args, env={})
    except SettingsError as exc:
        raise TopologyError(f"diffproxy.extra_args: the diff proxy rejects its flags: {exc}") \
            from exc

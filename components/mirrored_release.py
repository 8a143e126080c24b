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

import dataclasses
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_random

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
        # Env values given as Outputs (a secret from `config.require_secret`) are unknown at
        # preview: the checks see "" in their place, and the Deployment gets the Outputs as
        # they are, so a secret stays one in the state.
        output_env = [k for k, v in _mapping_items(args.candidate.env)
                      if isinstance(v, pulumi.Output)]
        checked = args if not output_env else dataclasses.replace(
            args, candidate=dataclasses.replace(
                args.candidate, env={**args.candidate.env, **dict.fromkeys(output_env, "")}))
        try:
            check(name, checked)
            _check_diffproxy_flags(release_diffproxy_args(name, checked))
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
        # Scaled out: the replicas' shared PostgreSQL first (they wait for it to answer).
        store: list[pulumi.Resource] = []
        self.store_password: pulumi.Output[str] | None = None
        if objects.store_secret is not None:
            password = pulumi_random.RandomPassword(
                f"{name}-store-password", length=32, special=False,
                opts=pulumi.ResourceOptions(parent=self))
            self.store_password = password.result
            secret = {**objects.store_secret, "string_data": {"password": password.result}}
            store.append(child("store", secret))
        if objects.store:
            store_service, statefulset = objects.store
            store.append(child("store", store_service))
            store.append(child("store", statefulset, *store))
        self.diffproxy = child("diffproxy", proxy, *claims, *store)
        self.diffproxy_service = child("diffproxy", proxy_service)
        for obj in objects.scaling:
            role = "diffproxy-budget" if obj["kind"] == "PodDisruptionBudget" else "diffproxy-scaler"
            child(role, obj, self.diffproxy)
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


def _mapping_items(env: object) -> list[tuple[object, object]]:
    # Not a mapping: check() says so, naming candidate.env.
    return list(env.items()) if isinstance(env, Mapping) else []


def _check_diffproxy_flags(args: list[str]) -> None:
    """The diff proxy's own parser, so a flag it would reject at start fails the preview."""
    from diffproxy.settings import SettingsError, load

    try:
        load(args, env={})
    except SettingsError as exc:
        raise TopologyError(f"diffproxy.extra_args: the diff proxy rejects its flags: {exc}") \
            from exc

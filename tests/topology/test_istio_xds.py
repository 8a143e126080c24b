"""The translator: the Pulumi program's DestinationRule and VirtualService, as istiod renders them."""

from __future__ import annotations

import copy

import pytest

from localmesh.sidecar import EnvoyInstance, envoy_config, find_envoy, local_services, mirror_clusters
from topology import DEFAULT, Istio, TopologyError
from topology.istio import copy_host, shadow_host
from topology.istio_xds import Endpoint, Service, Sidecar, sidecar_config, vhost_domains
from topology.kube import mirror_rule_objects

T = DEFAULT
APP = T.service_host
SIDECAR = Sidecar(T.app_namespace, "127.0.0.1", 10000, "127.0.0.1", 10001)


def services(relay: bool = True) -> list[Service]:
    endpoints = [Endpoint("127.0.0.1", 11001, T.app_labels("v1"))]
    if relay:
        endpoints.append(Endpoint("127.0.0.1", 11002, T.app_labels("v2")))
    return [Service(APP, T.ports.app, tuple(endpoints), ("127.0.0.1", "::1")),
            Service(T.diffproxy_host, T.ports.proxy, (Endpoint("127.0.0.1", 11003),))]


def translate(t=T, istio: Istio | None = None, vs_edit=None) -> dict:
    rule, vs = mirror_rule_objects(t)
    if vs_edit:
        vs = copy.deepcopy(vs)
        vs_edit(vs["spec"]["http"][0])
    return sidecar_config([rule], [vs], services(t.relay), t.ports.app, SIDECAR, istio or t.istio)


def route(config: dict) -> dict:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    vhost, = [v for v in hcm["route_config"]["virtual_hosts"] if v["name"] == f"{APP}:{T.ports.app}"]
    return vhost["routes"][0]["route"]


def test_clusters_per_service_and_subset_with_their_endpoints():
    clusters = {c["name"]: c for c in translate()["static_resources"]["clusters"]}
    assert set(clusters) == {f"outbound|44134||{APP}", f"outbound|44134|v1|{APP}",
                             f"outbound|44134|v2|{APP}", f"outbound|8880||{T.diffproxy_host}"}

    def ports(name):
        return [e["endpoint"]["address"]["socket_address"]["port_value"]
                for group in clusters[name]["load_assignment"]["endpoints"] for e in group["lb_endpoints"]]

    assert ports(f"outbound|44134|v1|{APP}") == [11001]
    assert ports(f"outbound|44134|v2|{APP}") == [11002]
    assert ports(f"outbound|44134||{APP}") == [11001, 11002]


def test_the_route_goes_to_v1_and_mirrors_to_v2_at_the_topology_percentage():
    action = route(translate(T.with_(mirror_percentage=12.5)))
    assert action["cluster"] == f"outbound|44134|v1|{APP}"
    assert action["request_mirror_policies"] == [{
        "cluster": f"outbound|44134|v2|{APP}",
        "runtime_fraction": {"default_value": {"numerator": 125000, "denominator": "MILLION"}},
        "trace_sampled": False,
        "disable_shadow_host_suffix_append": True}]


def test_relay_off_mirrors_straight_to_the_diff_proxy():
    config = translate(T.with_(relay=False))
    assert [p["cluster"] for p in route(config)["request_mirror_policies"]] == [f"outbound|8880||{T.diffproxy_host}"]
    assert f"outbound|44134|v2|{APP}" not in {c["name"] for c in config["static_resources"]["clusters"]}


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda h: h.pop("mirrorPercentage"), {"numerator": 100, "denominator": "HUNDRED"}),
    (lambda h: h.update(mirrorPercentage={"value": 100.0}), {"numerator": 1000000, "denominator": "MILLION"}),
    (lambda h: h.update(mirrorPercentage={"value": 0.0001}), {"numerator": 1, "denominator": "MILLION"}),
    # istiod converts value*10000 with Go's uint32(): truncation, 0.57*10000 = 5699.999...
    (lambda h: h.update(mirrorPercentage={"value": 0.57}), {"numerator": 5699, "denominator": "MILLION"}),
    (lambda h: (h.pop("mirrorPercentage"), h.update(mirrorPercent=30)), {"numerator": 30, "denominator": "HUNDRED"}),
])
def test_mirror_fraction_as_istiod_computes_it(edit, expected):
    policy, = route(translate(vs_edit=edit))["request_mirror_policies"]
    assert policy["runtime_fraction"] == {"default_value": expected}


@pytest.mark.parametrize("edit", [
    lambda h: h.update(mirrorPercentage={"value": 0.0}),
    lambda h: (h.pop("mirrorPercentage"), h.update(mirrorPercent=0)),
])
def test_zero_percent_emits_no_policy(edit):
    assert "request_mirror_policies" not in route(translate(vs_edit=edit))


def test_mirrors_list_gives_one_policy_each_and_skips_zero():
    def edit(http):
        http.pop("mirror"), http.pop("mirrorPercentage")
        http["mirrors"] = [
            {"destination": {"host": APP, "subset": "v2", "port": {"number": 44134}}, "percentage": {"value": 25}},
            {"destination": {"host": T.diffproxy_host}},
            {"destination": {"host": APP, "subset": "v1"}, "percentage": {"value": 0}},
        ]
    policies = route(translate(vs_edit=edit))["request_mirror_policies"]
    assert [(p["cluster"], p["runtime_fraction"]["default_value"]) for p in policies] == [
        (f"outbound|44134|v2|{APP}", {"numerator": 250000, "denominator": "MILLION"}),
        # No port given: the Service's only port.
        (f"outbound|8880||{T.diffproxy_host}", {"numerator": 100, "denominator": "HUNDRED"}),
    ]


def test_mirror_and_mirrors_together_are_rejected():
    with pytest.raises(TopologyError, match="both mirror and mirrors"):
        translate(vs_edit=lambda h: h.update(mirrors=[{"destination": {"host": APP}}]))


def test_several_destinations_become_weighted_clusters_without_zero_weights():
    def edit(http):
        http["route"] = [{"destination": {"host": APP, "subset": "v1"}, "weight": 90},
                         {"destination": {"host": APP, "subset": "v2"}, "weight": 10},
                         {"destination": {"host": T.diffproxy_host}, "weight": 0}]
    action = route(translate(vs_edit=edit))
    assert "cluster" not in action
    assert action["weighted_clusters"] == {"clusters": [
        {"name": f"outbound|44134|v1|{APP}", "weight": 90}, {"name": f"outbound|44134|v2|{APP}", "weight": 10}]}


@pytest.mark.parametrize(("istio", "disabled", "form"), [
    (Istio("1.28.1"), True, "plain"),
    (Istio("1.28.1", "1.27"), False, "shadow"),
    (Istio("1.28.1", "1.25"), False, "shadow"),
    (Istio("1.27.3"), False, "shadow"),
    (Istio("1.30.0", "1.28"), True, "plain"),
])
def test_shadow_host_suffix_follows_the_istio_release(istio, disabled, form):
    policy, = route(translate(istio=istio))["request_mirror_policies"]
    assert policy["disable_shadow_host_suffix_append"] is disabled
    assert istio.host_form == form
    assert istio.istiod_values() == ({"compatibilityVersion": istio.compatibility_version}
                                     if istio.compatibility_version else {})


@pytest.mark.parametrize(("version", "compat", "key"), [
    ("1.28", "", "istioVersion"), ("latest", "", "istioVersion"),
    ("1.28.1", "1.28", "istioCompatibilityVersion"), ("1.28.1", "1.27.0", "istioCompatibilityVersion"),
    ("1.27.3", "1.29", "istioCompatibilityVersion"),
])
def test_bad_istio_values_name_their_key(version, compat, key):
    with pytest.raises(TopologyError, match=f"^{key} "):
        Istio(version, compat)


@pytest.mark.parametrize(("caller", "shadowed"), [
    ("mirrorservice-sample:44134", "mirrorservice-sample-shadow:44134"),
    ("svc.ns.svc.cluster.local:8000", "svc.ns.svc.cluster.local-shadow:8000"),
    ("10.1.2.3", "10.1.2.3-shadow"),
    ("[::1]:8000", "[::1]-shadow:8000"),
    ("[::1]", "[::1]-shadow"),
])
def test_shadow_host_forms(caller, shadowed):
    assert shadow_host(caller) == shadowed
    assert copy_host(Istio("1.27.3"), caller) == shadowed
    assert copy_host(Istio("1.28.1"), caller) == caller


def test_virtual_host_answers_the_names_a_same_namespace_caller_uses():
    service = services()[0]
    assert vhost_domains(service, T.app_namespace) == [
        APP, "mirrorservice-sample", "mirrorservice-sample.mirror-demo.svc", "mirrorservice-sample.mirror-demo",
        "127.0.0.1", "[::1]"]
    assert "mirrorservice-sample" not in vhost_domains(service, "elsewhere")


@pytest.mark.parametrize("relay", [True, False])
@pytest.mark.parametrize("percentage", [100.0, 12.5, 0.0])
@pytest.mark.parametrize("istio", [Istio("1.28.1"), Istio("1.28.1", "1.27"), Istio("1.27.3")],
                         ids=lambda i: i.describe())
def test_every_generated_config_passes_envoy_validate(tmp_path, relay, percentage, istio):
    t = T.with_(relay=relay, mirror_percentage=percentage, istio=istio)
    config = envoy_config(t, local_services(t, 11001, 11002 if relay else None, 11003), 10000, 10001,
                          str(tmp_path / "access.log"))
    assert len(mirror_clusters(config)) == (0 if percentage == 0 else 1)
    instance = EnvoyInstance("sidecar", tmp_path / "sidecar", find_envoy())
    instance.write(config)
    instance.validate()  # raises MeshError with Envoy's complaint


def test_envoy_validate_really_rejects_a_broken_config(tmp_path):
    from localmesh.errors import MeshError

    config = envoy_config(T, local_services(T, 11001, 11002, 11003), 10000, 10001, str(tmp_path / "a.log"))
    route(config)["request_mirror_policies"][0]["runtime_fraction"]["default_value"]["denominator"] = "BILLION"
    instance = EnvoyInstance("sidecar", tmp_path / "sidecar", find_envoy())
    instance.write(config)
    with pytest.raises(MeshError, match="Envoy rejects"):
        instance.validate()


def test_a_domain_claimed_twice_stays_with_the_first_virtual_host(tmp_path):
    # Two Services on one port sharing an address: Envoy would reject the duplicate domain.
    shared = [Service(APP, T.ports.app, (Endpoint("127.0.0.1", 11001, T.app_labels("v1")),), ("127.0.0.1",)),
              Service("other.mirror-demo.svc.cluster.local", T.ports.app, (Endpoint("127.0.0.1", 11004),),
                      ("127.0.0.1",))]
    rule, vs = mirror_rule_objects(T)
    config = sidecar_config([rule], [vs], shared, T.ports.app, SIDECAR, T.istio)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    domains = [d for v in hcm["route_config"]["virtual_hosts"] for d in v["domains"]]
    assert len(domains) == len(set(domains)) and "127.0.0.1" in domains
    instance = EnvoyInstance("sidecar", tmp_path / "sidecar", find_envoy())
    instance.write(config)
    instance.validate()

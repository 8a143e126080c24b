"""The copy's Host follows the Istio release: 1.28 keeps the caller's Host, 1.28 with
compatibilityVersion 1.27 and 1.27 itself append `-shadow` to the host part, IPv6 literals
included (`[::1]:44134` -> `[::1]-shadow:44134`); the relay and the diff proxy work with each."""

from __future__ import annotations

from topology import Istio
from topology.istio import shadow_host

IPV6_HOST = "[::1]:44134"


def test_every_istio_release_gives_its_host_form_and_results(backend):
    releases = backend.istio_releases()
    assert releases, "a backend offers at least the Istio it runs"
    for istio in releases:
        with backend.open(mirror_percentage=100.0, istio=istio) as mesh:
            if istio is not None:
                assert mesh.host_form == istio.host_form
            expect = (lambda host: host) if mesh.host_form == "plain" else shadow_host
            replies, overview = mesh.fresh_run(["/headers"] * 2 + ["/json"] * 2)
            assert all(r.status == 200 for r in replies)
            assert {n: e["total"] for n, e in overview.items()} == {"GET /headers": 2, "GET /json": 2}, istio
            assert overview["GET /json"]["signal"] is True, istio
            hosts = mesh.relay_hosts()
            if hosts is None:  # kind's relay image does not log the Host
                continue
            assert set(hosts) == {expect(mesh.entry_host)}, istio

            # A caller addressing the Service by an IPv6 literal (local only: its entry is
            # reachable from here, and the local Service's addresses include ::1).
            with mesh.caller() as client:
                statuses = [client.get("/headers", headers={"Host": IPV6_HOST}).status_code
                            for _ in range(3)]
            assert statuses == [200] * 3
            seen = len(hosts)
            copies = mesh.wait_for(lambda seen=seen: mesh.relay_hosts()[seen:], lambda h: len(h) >= 3)
            assert copies == [expect(IPV6_HOST)] * 3, istio
            overview = mesh.wait_totals(7)
            assert overview["GET /headers"]["total"] == 5, istio


def test_the_diff_proxy_records_the_callers_host_when_envoy_shadows_it(backend):
    """Relay off, suffix on: the diff proxy gets Envoy's copy itself, Host `-shadow`ed in the
    form the relay test above sees Envoy send (IPv6 literal included), and its record must
    show the Host the caller sent."""
    with backend.open(mirror_percentage=100.0, istio=Istio("1.27.3"), relay=False) as direct:
        callers = [direct.entry_host, IPV6_HOST, "127.0.0.1:44134", "[::1]"]
        direct.fresh_run([])
        with direct.caller() as client:
            for host in callers:
                assert client.get("/json", headers={"Host": host}).status_code == 200
        direct.wait_totals(len(callers))
        # GET /json differs on the candidate, so the proxy keeps every request as an example.
        records = direct.results("GET /json", "body.slideshow.author")
        assert sorted(r["request"]["headers"]["host"] for r in records) == sorted(callers)

"""Istio before 1.28 sends mirrored copies to `host-shadow[:port]`, 1.28+ leaves the Host
alone; the relay and the diff proxy must work with either."""

from __future__ import annotations

from localmesh.sidecar import shadow_host


def test_every_host_form_produces_results(backend):
    forms = backend.host_forms()
    assert forms, "a backend offers at least the Host form of its Istio"
    for form in forms:
        with backend.open(mirror_percentage=100.0, host_form=form) as mesh:
            assert mesh.host_form == form
            replies, overview = mesh.fresh_run(["/headers"] * 2 + ["/json"] * 2)
            assert all(r.status == 200 for r in replies)
            assert {n: e["total"] for n, e in overview.items()} == {"GET /headers": 2, "GET /json": 2}, form
            assert overview["GET /json"]["signal"] is True, form
            hosts = mesh.relay_hosts()
            if hosts is not None:  # kind's relay image does not log the Host
                expected = shadow_host(mesh.entry_host) if form == "shadow" else mesh.entry_host
                assert set(hosts) == {expected}, form

"""Both e2e backends keep the `MeshBackend` protocol, checked on the classes (no mesh is
started): every member exists, properties are properties, and every method takes the
protocol's parameters by the same names and in the same places, so a test written against
the protocol runs on either backend (`isinstance` on a runtime-checkable Protocol only
checks that the names exist)."""

from __future__ import annotations

import inspect

import pytest

from localmesh.backend import MeshBackend
from localmesh.kind import KindMesh
from localmesh.stack import LocalMesh

MEMBERS = sorted({*MeshBackend.__annotations__,
                  *(n for n, v in vars(MeshBackend).items()
                    if not n.startswith("_") and (callable(v) or isinstance(v, property)))})


def _parameters(func) -> dict[str, inspect.Parameter]:
    return dict(list(inspect.signature(func).parameters.items())[1:])  # without self


def test_the_protocol_lists_what_the_e2e_suite_uses():
    assert {"backend", "api_url", "send", "send_paths", "received", "kill_candidate"} <= set(MEMBERS)


@pytest.mark.parametrize("backend", [LocalMesh, KindMesh], ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", MEMBERS)
def test_each_backend_keeps_the_protocol(backend, name):
    assert hasattr(backend, name), f"{backend.__name__} has no {name}"
    wanted = vars(MeshBackend).get(name)
    found = inspect.getattr_static(backend, name)
    if name in MeshBackend.__annotations__:
        assert isinstance(found, str) and found == backend.backend
    elif isinstance(wanted, property):
        assert isinstance(found, property), f"{backend.__name__}.{name} is not a property"
    else:
        have, need = _parameters(found), _parameters(wanted)
        # the protocol's parameters first, in its order: a positional call means the same
        assert list(have)[:len(need)] == list(need), f"{backend.__name__}.{name}{list(have)}"
        for param, spec in need.items():
            assert (have[param].default is inspect.Parameter.empty) == \
                (spec.default is inspect.Parameter.empty), f"{backend.__name__}.{name}({param})"
        extra = [p for p in have if p not in need and have[p].default is inspect.Parameter.empty]
        assert not extra, f"{backend.__name__}.{name} needs {extra}, which the protocol does not pass"

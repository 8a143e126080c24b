"""The example-sampling policy shared by the pipeline and the store."""

from __future__ import annotations

from diffproxy.sampling import ExampleSampler, newest
from diffproxy.store import with_endpoint


def test_select_keeps_the_first_and_the_latest_per_key():
    sampler = ExampleSampler(first=2, latest=2)
    keys = [[("GET /a", "body.x")] for _ in range(20)]
    kept = sampler.select(keys)
    assert [i for i, k in enumerate(kept) if k] == [0, 1, 18, 19]
    # a later batch: the first two are taken, only its latest count
    assert [i for i, k in enumerate(sampler.select(keys[:5])) if k] == [3, 4]
    sampler.reset()
    assert [i for i, k in enumerate(sampler.select(keys[:5])) if k] == [0, 1, 3, 4]


def test_a_record_is_selected_when_any_of_its_keys_wants_it():
    sampler = ExampleSampler(first=0, latest=1)
    kept = sampler.select([[("e", "a"), ("e", "b")], [("e", "a")], [("e", "c")]])
    assert kept == [True, True, True]  # 0 is the newest for "b", 1 for "a", 2 for "c"
    assert newest([["a"], ["a"], ["a"]], 0) == [False, False, False]


def test_first_counts_stay_bounded():
    sampler = ExampleSampler(first=1, latest=0, max_keys=10)
    for n in range(50):
        assert sampler.select([[("e", f"f{n}")]]) == [True]
    assert len(sampler.first_counts) <= 11


def test_with_endpoint_splices_without_parsing():
    assert with_endpoint('{"id":"r1"}', 'GET /"x"') == '{"endpoint":"GET /\\"x\\"","id":"r1"}'
    assert with_endpoint("{}", "e") == '{"endpoint":"e"}'

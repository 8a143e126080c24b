"""`-workers=N`, N > 1: N-1 more processes serve the proxy port next to the owner.

`pool` is the owner's side (starts them, folds what they send into the one store and the
one set of metrics), `child` is the worker process itself, `channel` the framing of the
messages between the two.
"""

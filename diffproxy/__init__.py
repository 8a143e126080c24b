"""diffproxy: a Diffy-compatible difference proxy.

Every request that reaches the proxy port goes to three targets at once — primary,
secondary (another instance of the primary's version) and candidate. The caller gets the
primary's answer; the three answers are compared off the request path. Differences that
also show up between primary and secondary are noise, the rest are signal. Results live in
SQLite, so they survive restarts, and are served by a Diffy-compatible JSON API and a web
console. Run it with `python -m diffproxy -candidate=... -master.primary=...`.
"""

__version__ = "0.1.0"

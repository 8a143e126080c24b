"""Command line: `demo` (what `make demo` runs), `traffic` (the sleep pod's role), `down`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from localmesh import traffic
from localmesh.errors import MeshError
from localmesh.kind import DEMO_STACK, E2E_STACK
from topology import DEFAULT, Istio, TopologyError

BACKENDS = ("local", "kind")


def _bounded(cast: type, low: float, high: float | None, what: str, bounds: str):
    """An argparse type: `cast` the text and keep it within [low, high]."""
    def convert(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{bounds}, got {value:g}")
        return value
    return convert


_port = _bounded(int, 1, 65535, "a port number", "port must be 1-65535")
_percentage = _bounded(float, 0.0, 100.0, "a number", "must be between 0 and 100")
_positive = _bounded(int, 1, None, "a whole number", "must be at least 1")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m localmesh",
                                   description="The Istio traffic-mirroring demo, on loopback or on kind.")
    sub = root.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="start the whole demo, send sample traffic, stay up until Ctrl-C")
    demo.add_argument("--backend", choices=BACKENDS, default="local")
    demo.add_argument("--mirror-percentage", type=_percentage, default=DEFAULT.mirror_percentage,
                      help="share of requests mirrored to v2, as the VirtualService's mirrorPercentage")
    demo.add_argument("--istio-version", default=DEFAULT.istio.version,
                      help="the Istio release: kind installs it, locally the sidecar's config imitates "
                           "its istiod (before 1.28 copies go to host-shadow:port; default %(default)s)")
    demo.add_argument("--istio-compatibility-version", default=DEFAULT.istio.compatibility_version,
                      metavar="MAJOR.MINOR",
                      help="istiod's compatibilityVersion; 1.27 or lower restores the -shadow Host")
    demo.add_argument("--relay", action=argparse.BooleanOptionalAction, default=DEFAULT.relay,
                      help="local: mirror through the nginx relay (v2), or --no-relay straight to the diff proxy")
    demo.add_argument("--prometheus", action=argparse.BooleanOptionalAction, default=True,
                      help="local: run a Prometheus scraping the diff proxy and Envoy, with the "
                           "release's alerting rules (Debian's prometheus package)")
    demo.add_argument("--state", type=Path, metavar="FILE",
                      help="local: once everything is up, write the URL of every part to FILE (JSON)")
    demo.add_argument("--run-dir", type=Path, help="folder for logs and results (default ./run/<timestamp>)")
    for role, what in (("entry", "mesh entry (the caller's Envoy)"), ("envoy-admin", "Envoy admin"),
                       ("console", "diff proxy API and console"),
                       ("proxy", "diff proxy's mirrored-traffic listener"), ("admin", "diff proxy admin"),
                       ("prometheus", "local Prometheus"), ("v1", "httpbin v1"), ("relay", "v2 relay"),
                       ("master", "httpbin-master"),
                       ("candidate", "httpbin-candidate")):
        demo.add_argument(f"--{role}-port", type=_port, help=f"local: port of the {what} (default: a free one)")
    demo.add_argument("--cluster-name", default="mirror-demo", help="kind: cluster name")
    demo.add_argument("--state-dir", type=Path, default=Path(".pulumi-state"),
                      help="kind: Pulumi file state backend folder")
    demo.add_argument("--stack", default=DEMO_STACK,
                      help=f"kind: Pulumi stack (the e2e suite uses its own, {E2E_STACK})")

    send = sub.add_parser("traffic", help="send the original demo's requests to the mesh entry")
    send.add_argument("--url", required=True, help="mesh entry, e.g. http://127.0.0.1:PORT")
    send.add_argument("-n", "--requests", type=_positive, default=len(traffic.DEMO_PATHS),
                      help=f"number of requests, cycling through the paths (default {len(traffic.DEMO_PATHS)})")
    send.add_argument("--path", action="append", dest="paths",
                      help="path to request (repeatable; '{id}' becomes a number). Default: "
                           + " ".join(traffic.DEMO_PATHS))
    send.add_argument("--host", default=f"{DEFAULT.service}:{DEFAULT.ports.app}",
                      help="Host header, as the cluster's sleep pod sends it (default %(default)s)")
    send.add_argument("--interval", type=float, default=traffic.DEMO_INTERVAL,
                      help="seconds between requests (default %(default)s, a curl loop's pace)")
    send.add_argument("-q", "--quiet", action="store_true", help="only the summary line")

    down = sub.add_parser("down", help="kind: destroy the demo's Pulumi stack and delete the cluster")
    down.add_argument("--backend", choices=("kind",), default="kind")
    down.add_argument("--cluster-name", default="mirror-demo")
    down.add_argument("--state-dir", type=Path, default=Path(".pulumi-state"))
    down.add_argument("--stack", default=DEMO_STACK,
                      help=f"Pulumi stack to destroy and remove ({E2E_STACK}: the e2e suite's)")
    return root


def _traffic(args: argparse.Namespace) -> int:
    paths = list(traffic.expand(args.paths or traffic.DEMO_PATHS, args.requests))
    replies = traffic.send(args.url.rstrip("/"), paths, host=args.host or None,
                           interval=max(0.0, args.interval))
    if not args.quiet:
        for r in replies:
            print(f"{r.status} GET {r.path}")
    ok = sum(1 for r in replies if 200 <= r.status < 400)
    print(f"{len(replies)} requests sent to {args.url}, {ok} answered 2xx/3xx")
    return 0


def _demo(args: argparse.Namespace) -> int:
    istio = Istio(args.istio_version, args.istio_compatibility_version)
    if args.backend == "kind":
        topology = DEFAULT.with_(mirror_percentage=args.mirror_percentage, istio=istio)
        from localmesh import kind

        # The same Istio model reaches the cluster as Pulumi config (the istiod Helm release).
        istio_config = {"istioVersion": istio.version,
                        "istioCompatibilityVersion": istio.compatibility_version}
        return kind.run_demo(kind.KindSettings(topology=topology, cluster_name=args.cluster_name,
                                               state_dir=args.state_dir, run_dir=args.run_dir,
                                               stack_name=args.stack,
                                               extra_config=istio_config))
    from localmesh.demo import run_local
    from localmesh.stack import LocalPorts, MeshSettings

    topology = DEFAULT.with_(mirror_percentage=args.mirror_percentage, relay=args.relay, istio=istio)
    ports = LocalPorts(entry=args.entry_port, envoy_admin=args.envoy_admin_port, v1=args.v1_port,
                       relay=args.relay_port,
                       master=args.master_port, candidate=args.candidate_port, proxy=args.proxy_port,
                       admin=args.admin_port, console=args.console_port,
                       prometheus=args.prometheus_port)
    return run_local(MeshSettings(topology=topology, run_dir=args.run_dir, ports=ports,
                                  prometheus=args.prometheus),
                     state_file=args.state)


def _down(args: argparse.Namespace) -> int:
    from localmesh import kind

    return kind.run_down(kind.KindSettings(cluster_name=args.cluster_name, state_dir=args.state_dir,
                                           stack_name=args.stack))


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "traffic":
            return _traffic(args)
        if args.command == "demo":
            return _demo(args)
        return _down(args)
    except (MeshError, TopologyError) as exc:
        print(f"localmesh: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

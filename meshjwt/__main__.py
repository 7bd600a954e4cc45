"""The ``meshjwt`` command: ``run`` (the built-in suites), ``validate`` (your files), ``playground``, ``version``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from meshjwt import __version__
from meshjwt.settings import JWKS_FETCH_MODES
from meshjwt.tokens import DEFAULT_ISSUER


def port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="meshjwt", description="mesh-jwt-conformance tools")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("version", help="print the suite version")
    commands.add_parser(
        "run", help="run the built-in conformance suites here (reports in ./reports/<target>/)", add_help=False,
        usage="meshjwt run [--target local|kind|cluster] [pytest options]   (meshjwt run --help: all options)",
    )  # fmt: skip
    check = commands.add_parser("validate", help="check scenario and policy files (one line per problem)")
    check.add_argument("files", nargs="+", metavar="FILE", help="scenario or Istio YAML files, or folders of them")
    play = commands.add_parser(
        "playground", help="run the local reference mesh on a folder of Istio policies",
        description="Start the local reference mesh with the Istio resources of DIR, print its listeners, "
        "a valid token and curl lines, and re-apply DIR when its files change.",
    )  # fmt: skip
    play.add_argument("--policies", type=Path, required=True, metavar="DIR",
                      help="folder of Istio YAML (RequestAuthentication, AuthorizationPolicy, ...)")  # fmt: skip
    play.add_argument("--sidecar-port", type=port, default=None, help="fixed port of the httpbin sidecar listener")
    play.add_argument("--gateway-port", type=port, default=None, help="fixed port of the ingress gateway listener")
    play.add_argument("--jwks-fetch-mode", choices=JWKS_FETCH_MODES, default="istiod",
                      help="PILOT_JWT_ENABLE_REMOTE_JWKS of the modeled istiod (default: istiod)")  # fmt: skip
    play.add_argument("--issuer", default=DEFAULT_ISSUER, help=f"issuer of the printed token ({DEFAULT_ISSUER})")
    play.add_argument("--poll-interval", type=float, default=0.5, help="seconds between checks of DIR (0.5)")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:  # everything after "run" belongs to pytest
        from meshjwt.run import main as run_suites

        return run_suites(argv[1:])
    args = parser().parse_args(argv)
    if args.command == "version":
        print(f"mesh-jwt-conformance {__version__}")
        return 0
    if args.command == "validate":
        from meshjwt.validate import main as validate

        return validate(args.files)
    from meshjwt.playground import Options, run  # the mesh's imports only when needed

    return run(Options(policies=args.policies, sidecar_port=args.sidecar_port, gateway_port=args.gateway_port,
                       jwks_fetch_mode=args.jwks_fetch_mode, issuer=args.issuer,
                       poll_interval=args.poll_interval), out=sys.stdout, err=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

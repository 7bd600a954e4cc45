"""``python -m rehearsal.apiserver --port P --kubeconfig FILE``: a stand-in server to poke at by hand."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from rehearsal.apiserver import ApiServer, ExecRequest, ExecResult


def echo(request: ExecRequest) -> ExecResult:
    """Exec for manual poking: prints the command line, then stdin if any."""
    return ExecResult(" ".join(request.command).encode() + b"\n" + (request.stdin or b""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal.apiserver", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the server here")
    parser.add_argument("--kube-version", default="v1.32.4")
    parser.add_argument("--debug", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(message)s")
    server = ApiServer(kube_version=args.kube_version, exec_handler=echo)
    try:
        url = server.start(port=args.port)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        if args.kubeconfig:
            server.kubeconfig(args.kubeconfig)
        print(url, flush=True)
        done.wait()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

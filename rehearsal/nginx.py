"""nginx-proxy's configuration, read as nginx would, for the directives the targets write and nothing more.

The simulated JWKS server (the local mesh's workload server) is told what nginx would do with the
``default.conf`` a target put in ConfigMap nginx-proxy-conf. Any other directive, context or form is
refused with :class:`NginxConfError`: the rehearsal never guesses what a real nginx would make of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from meshjwt.kube.jwks_server import JWKS_FILE
from meshjwt.samples import NGINX_JWKS_PATH

_TOKEN = re.compile(r"""\s+|\#[^\n]*|(?P<q>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<p>[{};])|(?P<w>[^\s{};"'#]+)""")
_LOCATION_DIRECTIVES = {"default_type", "alias", "return", "if"}


class NginxConfError(ValueError):
    """A configuration the rehearsal does not model (or that nginx would refuse)."""


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None


@dataclass
class Location:
    """One ``location = PATH``: it serves the keys file (``alias``), or returns (code, text); ``rate`` is a
    ``limit_rate`` for requests with a ``lifecycle`` query argument."""

    alias: str | None = None
    returns: tuple[int, str] | None = None
    rate: int | None = None
    default_type: str = "text/plain"


def _unquote(token: str) -> str:
    if token[:1] in "\"'" and token[-1:] == token[:1]:
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def tokens(text: str) -> list[str]:
    """Words, quoted strings (unquoted) and ``{ } ;``; an unterminated quote is refused."""
    out, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise NginxConfError(f"unparsable nginx configuration at {text[pos:pos + 30]!r}")
        pos = match.end()
        if match.group("q"):
            out.append("\0" + _unquote(match.group("q")))  # marked: a quoted string is never punctuation
        elif match.group("p") or match.group("w"):
            out.append(match.group(0))
    return out


def parse(text: str) -> list[Directive]:
    """The directive tree of an nginx configuration."""
    stack: list[list[Directive]] = [[]]
    words: list[str] = []
    for token in tokens(text):
        if token == ";":
            if not words:
                raise NginxConfError("empty directive")
            stack[-1].append(Directive(words[0], [w.lstrip("\0") for w in words[1:]]))
            words = []
        elif token == "{":
            if not words:
                raise NginxConfError("block without a directive")
            directive = Directive(words[0], [w.lstrip("\0") for w in words[1:]], [])
            stack[-1].append(directive)
            stack.append(directive.block)  # type: ignore[arg-type]
            words = []
        elif token == "}":
            if len(stack) == 1 or words:
                raise NginxConfError("unbalanced '}'")
            stack.pop()
        else:
            words.append(token)
    if len(stack) != 1 or words:
        raise NginxConfError("unterminated block or directive")
    return stack[0]


def _location(block: list[Directive], path: str) -> Location:
    found = Location()
    for d in block:
        if d.name not in _LOCATION_DIRECTIVES:
            raise NginxConfError(f"location {path}: directive {d.name!r} is not modelled by the rehearsal")
        if d.name == "default_type" and len(d.args) == 1:
            found.default_type = d.args[0]
        elif d.name == "alias" and d.args == [JWKS_FILE]:
            found.alias = JWKS_FILE
        elif d.name == "return" and len(d.args) == 2 and d.args[0].isdigit():
            if d.args[0] == "200" and "$" in d.args[1]:
                raise NginxConfError(f"location {path}: variables in a return body are not modelled")
            found.returns = (int(d.args[0]), d.args[1])
        elif d.name == "if" and d.args == ["($arg_lifecycle)"] and d.block is not None and len(d.block) == 1 \
                and d.block[0].name == "limit_rate" and len(d.block[0].args) == 1 and d.block[0].args[0].isdigit():
            found.rate = int(d.block[0].args[0])
        else:
            raise NginxConfError(f"location {path}: {d.name} {' '.join(d.args)} is not modelled by the rehearsal")
    if found.alias is None and found.returns is None:
        raise NginxConfError(f"location {path} neither serves a file nor returns")
    return found


def locations(text: str) -> dict[str, Location]:
    """``location = PATH`` blocks of the one ``server`` listening on port 80."""
    tree = parse(text)
    if len(tree) != 1 or tree[0].name != "server" or tree[0].block is None:
        raise NginxConfError("expected exactly one server block")
    found: dict[str, Location] = {}
    for d in tree[0].block:
        if d.name == "listen" and d.args == ["80"]:
            continue
        if d.name == "location" and len(d.args) == 2 and d.args[0] == "=" and d.block is not None:
            found[d.args[1]] = _location(d.block, d.args[1])
            continue
        raise NginxConfError(f"server: {d.name} {' '.join(d.args)} is not modelled by the rehearsal")
    return found


def control(text: str, jwks_size: int) -> dict[str, Any]:
    """The simulated JWKS server's control (``meshjwt.localmesh.workloads``) for nginx answering ``/get_jwks``
    as ``text`` says: ``{}`` (the keys), ``{"body": …}``, ``{"status": 503, "body": …}`` (an error status),
    ``{"redirect": True}`` (one 302 hop to the keys; the Location differs from nginx's, the client's path does
    not) or ``{"delay": seconds}`` (a throttled body)."""
    found = locations(text)
    jwks = found.get(NGINX_JWKS_PATH)
    if jwks is None:
        raise NginxConfError(f"no location = {NGINX_JWKS_PATH}")
    if jwks.returns is not None:
        code, value = jwks.returns
        if code == 200:
            return {"body": value}
        if code >= 400:
            return {"status": code, "body": value}
        target = re.fullmatch(r"(/[\w/.-]*)\$is_args\$args", value)
        if code == 302 and target and (found.get(target.group(1)) or Location()).alias == JWKS_FILE:
            return {"redirect": True}
        raise NginxConfError(f"location {NGINX_JWKS_PATH}: return {code} {value} is not modelled by the rehearsal")
    if jwks.rate is not None:
        return {"delay": jwks_size / jwks.rate}  # bytes at limit_rate bytes/s (headers only add to it)
    return {}

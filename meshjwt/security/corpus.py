"""The probe's request paths: dotdotpwn/wfuzz-style variants of the private path, plus hypothesis mutations.

Every path is ASCII (non-ASCII characters travel percent-encoded as UTF-8, overlong forms included), starts
with ``/`` and contains no space or control character, so http.client and ``curl --path-as-is`` send it
byte for byte. The corpus is the same for a given seed (recorded in the report).
"""

from __future__ import annotations

import string
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshjwt.security.backends import PRIVATE_PATH

DEFAULT_SEED = 20260825
DEFAULT_MUTATIONS = 300

#: how the path may start (the private path follows), incl. traversal from the public folder
LEADS = (
    "/", "//", "///", "/./", "/.//", "/%2e/", "/%2E/", "/%2f", "/%2F", "/%5c", "/%5C", "/\\", "/;/", "/.;/",
    "/public/../", "/public/./../", "/public//../", "/public/%2e%2e/", "/public/%2E%2E/", "/public/.%2e/",
    "/public/%2e./", "/public/..%2f", "/public/..%2F", "/public/..%5c", "/public/..%5C", "/public/%2e%2e%2f",
    "/public/..\\", "/public/..;/", "/public/%252e%252e/", "/public/..%252f", "/public/%c0%ae%c0%ae/",
    "/public/..%c0%af", "/public/..%e0%80%af", "/public/index.html/../../", "/x/../", "/x/..%2f",
)  # fmt: skip
#: what may stand between "private" and "secret.html"
SEPARATORS = (
    "/", "//", "///", "/./", "/.//", "/x/../", "/%2e/", "%2f", "%2F", "%5c", "%5C", "\\", "%2f%2f", "/%2f",
    "%252f", "%252F", "%25252f", "%c0%af", "%C0%AF", "%e0%80%af", "%f0%80%80%af", "%ef%bc%8f", "%e2%88%95",
    "%u2215", "%u002f", ";/", "/;x/", ";x=1/", "%3b/", "/%20/../", "%09/",
)  # fmt: skip
#: spellings of the folder and of the file (case, percent-encoded letters, dots)
FOLDERS = ("private", "PRIVATE", "Private", "%70rivate", "%70%72%69%76%61%74%65", "privat%65", "pr%69vate",
           "private.", "private%20", "private%00")  # fmt: skip
FILES = ("secret.html", "SECRET.HTML", "Secret.html", "secret%2ehtml", "secret%2Ehtml", "%73ecret.html",
         "secret.htm", "secret.html.", "secret.html%20", "secret.html%00")  # fmt: skip
#: what may follow the file name
SUFFIXES = ("", "/", "/.", ".", "?", "?x=1", "?/../public/index.html", "#", "#x", "%23", ";", ";x=1", ";.html",
            "%00", "%00.html", "%20", "%09", "~", "::$DATA", "%3f", "/..", "%2f", "%5c")  # fmt: skip
#: dotdotpwn-style traversals from /public/: one ``../`` spelling, 1–3 times
DOTDOT = ("../", "..%2f", "..%2F", "%2e%2e/", "%2e%2e%2f", "%2E%2E%2F", "..%5c", "%2e%2e%5c", "..\\", ".%2e/",
          "%2e./", "%252e%252e%252f", "..%252f", "%c0%ae%c0%ae%c0%af", "..%c0%af", "..%c1%9c", "....//",
          "..;/", "..%00/", "%2e%2e%u2215")  # fmt: skip


@dataclass(frozen=True)
class Corpus:
    """The paths to send, and how they were made."""

    paths: tuple[str, ...]
    seed: int
    mutations: int  # how many of the paths came from hypothesis

    @property
    def fixed(self) -> int:
        return len(self.paths) - self.mutations


def fixed_paths() -> list[str]:
    """The hand-made (dotdotpwn/wfuzz-style) variants, in a stable order, without repeats."""
    folder, file = PRIVATE_PATH.strip("/").split("/")
    paths = [f"{lead}{folder}{sep}{file}" for lead in LEADS for sep in SEPARATORS[:12]]
    paths += [f"/{folder}{sep}{file}" for sep in SEPARATORS]
    paths += [f"/{f}/{name}{suffix}" for f in FOLDERS for name in FILES[:3] for suffix in SUFFIXES[:8]]
    paths += [f"/{folder}/{name}{suffix}" for name in FILES for suffix in SUFFIXES]
    paths += [f"/public/{step * depth}{folder}/{file}" for step in DOTDOT for depth in (1, 2, 3)]
    paths += [f"/public/x/{step * depth}{folder}/{file}" for step in DOTDOT for depth in (2, 3)]
    return list(dict.fromkeys(paths))


_INSERTS = ("/", "//", "./", "/./", "%2f", "%2F", "%5c", "%5C", "\\", ";", ";x", "x/../", "%2e", "%00", "%20",
            "%252f", "%c0%af", "%c0%ae", "?", "#", "~", "%u002f")  # fmt: skip
_OPS = ("encode", "encode-lower", "double-encode", "overlong", "case", "insert", "delete", "suffix", "prefix")


def mutate(path: str, ops: Iterable[tuple[str, int, str]]) -> str:
    """Apply mutation ``ops`` — (operation, position, text) — to ``path``; the result starts with ``/``."""
    for op, position, text in ops:
        i = position % max(len(path), 1)
        char = path[i] if path else "/"
        if op in ("encode", "encode-lower"):
            code = f"%{ord(char):02X}"
            path = path[:i] + (code.lower() if op == "encode-lower" else code) + path[i + 1 :]
        elif op == "double-encode":
            path = path[:i] + f"%25{ord(char):02X}" + path[i + 1 :]
        elif op == "overlong" and char in "/.":
            path = path[:i] + {"/": "%c0%af", ".": "%c0%ae"}[char] + path[i + 1 :]
        elif op == "case" and char in string.ascii_letters:
            path = path[:i] + char.swapcase() + path[i + 1 :]
        elif op == "insert":
            path = path[:i] + text + path[i:]
        elif op == "delete" and len(path) > 1:
            path = path[:i] + path[i + 1 :]
        elif op == "suffix":
            path += text
        elif op == "prefix":
            path = text + path
    return path if path.startswith("/") else "/" + path


def mutations(count: int, seed: int, base: str = PRIVATE_PATH) -> list[str]:
    """Up to ``count`` distinct hypothesis-generated mutations of ``base``, the same for the same seed."""
    if count <= 0:
        return []
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded
    from hypothesis import strategies as st
    from hypothesis.configuration import set_hypothesis_home_dir

    op = st.tuples(st.sampled_from(_OPS), st.integers(0, 63), st.sampled_from(_INSERTS))
    found: dict[str, None] = {}

    @seeded(seed)
    @settings(max_examples=count * 3, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(op, min_size=1, max_size=5))
    def collect(ops: list[tuple[str, int, str]]) -> None:
        if len(found) < count:
            found[mutate(base, ops)] = None

    with tempfile.TemporaryDirectory(prefix="meshjwt-hypothesis-") as home:  # its caches: not in the cwd
        set_hypothesis_home_dir(home)
        try:
            collect()
        finally:
            set_hypothesis_home_dir(None)
    return list(found)


def hypothesis_version() -> str | None:
    """The installed hypothesis version (the same seed gives the same mutations only on the same version)."""
    try:
        from hypothesis import __version__
    except ImportError:
        return None
    return __version__


def build(seed: int = DEFAULT_SEED, mutation_count: int = DEFAULT_MUTATIONS) -> Corpus:
    """The fixed variants plus hypothesis mutations (new ones only), for ``seed``."""
    fixed = fixed_paths()
    known = set(fixed)
    extra = [p for p in mutations(mutation_count, seed) if p not in known and sendable(p)]
    return Corpus(paths=tuple(fixed + extra), seed=seed, mutations=len(extra))


def sendable(path: str) -> bool:
    """ASCII, starts with ``/``, no space or control character (what a request line can carry verbatim)."""
    return path.startswith("/") and all(33 <= ord(c) < 127 for c in path)


def check(paths: Sequence[str]) -> list[str]:
    """The paths that are not :func:`sendable` (empty when the corpus is fine)."""
    return [p for p in paths if not sendable(p)]

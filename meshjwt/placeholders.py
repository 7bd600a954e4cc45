"""``${NAME}`` placeholders in manifests, requests and tokens, filled in one way everywhere (scenario
resources, requests and tokens, the sample workloads, schema validation)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from meshjwt.errors import ConfigError

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
Values = Mapping[str, str] | Callable[[str], "str | None"]


def substitute(value: Any, variables: Values, *, where: str, strict: bool = True) -> Any:
    """Replace ``${NAME}`` in every string of ``value`` (mapping keys included). ``variables`` is a mapping
    or a function of the name (None: unknown); an unknown name is a one-line ConfigError when ``strict``,
    else left in place."""
    if isinstance(value, str):
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            found = variables(name) if callable(variables) else variables.get(name)
            if found is not None:
                return str(found)
            if strict:
                known = "" if callable(variables) else f"; known: {', '.join(sorted(variables))}"
                raise ConfigError(f"{where}: unknown variable ${{{name}}}{known}")
            return match.group(0)

        return PLACEHOLDER.sub(one, value)
    if isinstance(value, list):
        return [substitute(v, variables, where=where, strict=strict) for v in value]
    if isinstance(value, dict):
        return {substitute(k, variables, where=where, strict=strict): substitute(v, variables, where=where,
                                                                                 strict=strict)
                for k, v in value.items()}  # fmt: skip
    return value

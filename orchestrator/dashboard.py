"""What ``tlsweep run --dashboard`` prints: the dashboard's URL and, when Ray's token authentication is on (the
default of a local Ray since 2.5x: every page asks for a token), the command that prints the token and a line
that opens an API page with it from a script.

Example:
    >>> print(how_to_open("127.0.0.1:8265", token_auth=True, cli="ray", env={}))  # doctest: +NORMALIZE_WHITESPACE
    Ray dashboard: http://127.0.0.1:8265
      it asks for Ray's token: paste what 'ray get-auth-token' prints (the token in ~/.ray/auth_token)
      from a script: curl -H "Authorization: Bearer $(ray get-auth-token 2>/dev/null)" http://127.0.0.1:8265/api/jobs/
"""
from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Mapping, Optional


def ray_cli() -> str:
    """The ``ray`` command of this interpreter's environment (it may not be on PATH), else ``ray``."""
    here = Path(sys.executable).with_name("ray")
    return shlex.quote(str(here)) if here.is_file() else "ray"


def token_auth_enabled() -> bool:
    """Whether the Ray this process joined asks for a token (Ray sets RAY_AUTH_MODE=token when it turns it on)."""
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
        return bool(is_token_auth_enabled())
    except Exception:  # noqa: BLE001 - a private API: fall back on the variable Ray sets
        return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def token_source(env: Mapping[str, str]) -> str:
    """Where ``ray get-auth-token`` reads the token: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token."""
    if env.get("RAY_AUTH_TOKEN"):
        return "the token in $RAY_AUTH_TOKEN"
    if env.get("RAY_AUTH_TOKEN_PATH"):
        return f"the token in {env['RAY_AUTH_TOKEN_PATH']}"
    return "the token in ~/.ray/auth_token"


def how_to_open(url: str, token_auth: Optional[bool] = None, cli: Optional[str] = None,
                env: Optional[Mapping[str, str]] = None) -> str:
    """The lines printed for the dashboard at ``url`` (``host:port``, as ``ray.init`` returns it)."""
    url = url if url.startswith("http") else f"http://{url}"
    token_auth = token_auth_enabled() if token_auth is None else token_auth
    if not token_auth:
        return f"Ray dashboard: {url}"
    cli = cli or ray_cli()
    env = os.environ if env is None else env
    return (f"Ray dashboard: {url}\n"
            f"  it asks for Ray's token: paste what '{cli} get-auth-token' prints ({token_source(env)})\n"
            f"  from a script: curl -H \"Authorization: Bearer $({cli} get-auth-token 2>/dev/null)\" {url}/api/jobs/")

"""Who is calling: a bearer token, or a client certificate the TLS layer verified against the CA."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from .errors import unauthorized

# What anonymous callers may read, as the default RBAC's system:public-info-viewer allows.
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version")


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...]
    method: str  # "token", "x509" or "anonymous"


def user_from_certificate(cert: dict[str, Any]) -> User:
    """CN is the user name and each O a group, as the API server's x509 authenticator reads them."""
    name, groups = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                name = value
            elif key == "organizationName":
                groups.append(value)
    return User(name, (*groups, "system:authenticated"), "x509")


class Authenticator:
    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = dict(tokens)  # token -> user name

    def add_token(self, token: str, user: str) -> None:
        self.tokens[token] = user

    def authenticate(self, authorization: str | None, peer_cert: dict[str, Any] | None, path: str) -> User:
        """Raises 401 Unauthorized when no method succeeds (a wrong token fails even on public paths)."""
        if peer_cert:
            return user_from_certificate(peer_cert)
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                for known, user in self.tokens.items():
                    if hmac.compare_digest(known.encode(), token.encode()):
                        return User(user, ("system:authenticated",), "token")
            raise unauthorized()
        if path in PUBLIC_PATHS:
            return User("system:anonymous", ("system:unauthenticated",), "anonymous")
        raise unauthorized()

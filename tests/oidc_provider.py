"""A minimal OpenID Connect provider on a free port, for the tests of tokens from trusted issuers."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from azurine.identity.tokens import COGNITIVE_AUDIENCES
from loopback_http import LoopbackHttp, QuietHandler

AUDIENCE = COGNITIVE_AUDIENCES[0]


class Provider:
    """A minimal OpenID provider: a discovery document and a JWKS that can be rotated; counts JWKS reads."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.jwks_reads = 0
        provider = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/.well-known/openid-configuration"):
                    body = {"issuer": provider.issuer, "jwks_uri": f"{provider.base}/keys"}
                elif self.path == "/keys":
                    provider.jwks_reads += 1
                    body = {"keys": [provider.jwk(kid, key) for kid, key in provider.keys.items()]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._http = LoopbackHttp(Handler)
        self.base = f"http://127.0.0.1:{self._http.port}"
        self.issuer = f"{self.base}/tenant-a"

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def jwk(kid: str, key: rsa.RSAPrivateKey) -> dict[str, str]:
        numbers = key.public_key().public_numbers()

        def b64(value: int) -> str:
            raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        return {"kty": "RSA", "use": "sig", "kid": kid, "n": b64(numbers.n), "e": b64(numbers.e), "alg": "RS256"}

    def add_key(self, kid: str) -> rsa.RSAPrivateKey:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.keys[kid]

    def token(self, kid: str, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600, "oid": "user-1",
                "tid": "tenant-a", "name": "Dana", **claims}
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})

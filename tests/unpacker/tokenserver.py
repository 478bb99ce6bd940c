"""A registry token server for tests (run as a process): ES256 JWTs as distribution wants.

Usage: ``python tokenserver.py PORT CERT_PEM_OUT USERS_JSON [EXPIRES_IN]``; anonymous
callers get pull, known users (Basic auth, ``{"user": "password"}``) pull and push.
Every issued token (``token user=...``) and every refused request (``refused user=...``)
is logged to stdout as one line, before the answer is sent, so tests can count refreshes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ISSUER, SERVICE = "test-issuer", "test-registry"


def make_key(cert_path: str) -> tuple[ec.EllipticCurvePrivateKey, str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token-signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    kid = ":".join(s[i:i + 4] for i in range(0, len(s), 4))
    x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    return key, kid, x5c


def main() -> None:
    port, cert_path, users = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    expires_in = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    key, kid, x5c = make_key(cert_path)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _user(self) -> str | None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return None
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            return user if users.get(user) == password else ""

        def _claimed_user(self) -> str:
            header = self.headers.get("Authorization", "")
            return base64.b64decode(header[6:]).decode().partition(":")[0]

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            user = self._user()
            if user == "":
                print(f"refused user={self._claimed_user()}", flush=True)
                self.send_response(401)
                self.end_headers()
                return
            access = []
            for scope in query.get("scope", []):
                kind, name, actions = scope.split(":")
                allowed = ["pull", "push"] if user else ["pull"]
                access.append({"type": kind, "name": name,
                               "actions": [a for a in actions.split(",") if a in allowed]})
            now = int(time.time())
            claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "exp": now + expires_in,
                      "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8),
                      "access": access}
            token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid,
                                                                         "x5c": [x5c]})
            print(f"token user={user or '-'} scopes={query.get('scope', [])}", flush=True)
            body = json.dumps({"token": token, "access_token": token, "expires_in": expires_in,
                               "issued_at": dt.datetime.now(dt.UTC).isoformat()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()

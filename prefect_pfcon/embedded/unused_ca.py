"""A CA file for Prefect's client when its server is plain HTTP on loopback.

Prefect's client builds a TLS context each time a client is created, loading the whole
certifi bundle (about 16 ms of CPU, holding the GIL), and the flow engine creates several
clients per flow run (log and event workers, suspension observer). Against the embedded
server (``http://127.0.0.1``) TLS is never used, so the context may as well hold a single
certificate: a self-signed one whose key is thrown away, so it vouches for nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALID_DAYS = 3650


def unused_ca_file(state_dir: Path) -> Path:
    """The certificate file in ``state_dir``, made on first use."""
    path = state_dir / "unused-ca.pem"
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prefect-pfcon unused CA")])
        now = datetime.now(timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path

"""TLS material for one lab, made with trustme: a CA per run and a server
certificate for the VIP (its IP address and a lab name).

The private key goes only to the private working directory of the lab (mounted
read-only into the HAProxy containers); the report gets the public parts
(``ca.pem``, ``server.crt``) so a user can verify a recorded run's peer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme

#: The name the server certificate carries besides the VIP's address.
SERVER_NAME = "vip.lbbench.test"

KEY_TYPES = {
    "ecdsa-p256": trustme.KeyType.ECDSA,
    "rsa-2048": trustme.KeyType.RSA,
}


@dataclass(frozen=True)
class TLSFiles:
    """Where a lab's TLS files live."""

    ca_pem: Path  # public: the CA certificate clients verify against
    server_crt: Path  # public: the server certificate chain
    server_pem: Path  # private: chain + key, for HAProxy's `crt`


def make_tls(private_dir: Path, vip: str, key_type: str) -> TLSFiles:
    """Create a CA and a server certificate for ``vip`` in ``private_dir``."""
    private_dir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(key_type=KEY_TYPES[key_type])
    cert = ca.issue_cert(vip, SERVER_NAME, key_type=KEY_TYPES[key_type])
    files = TLSFiles(
        ca_pem=private_dir / "ca.pem",
        server_crt=private_dir / "server.crt",
        server_pem=private_dir / "server.pem",
    )
    ca.cert_pem.write_to_path(str(files.ca_pem))
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    files.server_crt.write_bytes(chain)
    # HAProxy reads key and chain from one file; it runs as root in the
    # container, so the key can stay readable by its owner only.
    fd = os.open(files.server_pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(chain + cert.private_key_pem.bytes())
    return files

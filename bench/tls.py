"""TLS material for one lab, made with trustme: a CA per run and a server
certificate for the VIP (its IP address and a lab name); or the user's own
certificate, key and CA (``tls.certificate``, ``tls.key``, ``tls.ca``), checked
before anything starts (:func:`check_own_certificate`).

The private key goes only to the private working directory of the lab (mounted
read-only into the HAProxy containers); the report gets the public parts
(``ca.pem``, ``server.crt``) so a user can verify a recorded run's peer.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

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


@dataclass(frozen=True)
class OwnCertificate:
    """A user's certificate chain, key and CA (``tls.certificate``, ``tls.key``, ``tls.ca`` of a topology): paths."""

    certificate: str
    key: str
    ca: str
    server_name: str | None = None  # the name clients check; None = the certificate's first DNS name


def check_own_certificate(spec: OwnCertificate) -> tuple[list[tuple[str, str]], str | None]:
    """Problems of the user's certificate, key and CA, and the name clients will check (``tls.server_name`` or the first DNS name).

    Checked as a client would (:func:`handshake_problem`): the chain from the
    certificate through the intermediates in its file to one of ``ca``'s
    certificates, valid now, for the server name; and that ``key`` is the
    certificate's (HAProxy would refuse a mismatched pair only when it starts).
    """
    fix = "check the file (PEM); paths are relative to the file naming them"
    problems: list[tuple[str, str]] = []
    loaded: dict[str, bytes] = {}
    for field in ("certificate", "key", "ca"):
        path = Path(getattr(spec, field))
        try:
            loaded[field] = path.read_bytes()
        except OSError as exc:
            problems.append((f"tls.{field}: {path}: {exc.strerror or exc}", fix))
    if problems:
        return problems, None
    try:
        chain = x509.load_pem_x509_certificates(loaded["certificate"])
    except ValueError as exc:
        return [(f"tls.certificate: {spec.certificate}: no PEM certificate in it ({exc})", fix)], None
    try:
        x509.load_pem_x509_certificates(loaded["ca"])
    except ValueError as exc:
        return [(f"tls.ca: {spec.ca}: no PEM certificate in it ({exc})", fix)], None
    try:
        key = serialization.load_pem_private_key(loaded["key"], password=None)
    except TypeError:
        return [(f"tls.key: {spec.key}: the key is encrypted", "give HAProxy an unencrypted key (openssl pkey -in KEY -out PLAIN)")], None
    except ValueError as exc:
        return [(f"tls.key: {spec.key}: no PEM private key in it ({exc})", fix)], None
    leaf = chain[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, spki) != leaf.public_key().public_bytes(serialization.Encoding.DER, spki):
        return [(f"tls.key: {spec.key} is not the key of {spec.certificate}", "give the key the certificate was issued for")], None
    name = spec.server_name or _first_dns_name(leaf)
    if name is None:
        return [(f"tls.certificate: {spec.certificate} names no DNS name for the clients to check", "set tls.server_name to a name it carries")], None
    why = handshake_problem(Path(spec.certificate), Path(spec.key), Path(spec.ca), name)
    if why:
        problems.append(
            (
                f"tls.certificate: {spec.certificate} does not verify for {name!r} against tls.ca {spec.ca}: {why}",
                (
                    "put the intermediates after the certificate in its file, give the CA that issued the chain, "
                    "and a name it carries (tls.server_name)"
                ),
            )
        )
    return problems, name


def handshake_problem(certificate: Path, key: Path, ca: Path, name: str) -> str | None:
    """Why a client trusting only ``ca`` and asking for ``name`` would refuse this certificate (None: it accepts it).

    A real TLS handshake between two in-memory ends, with the same OpenSSL
    checks the lab's clients make: the chain, the dates, the name.
    """
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(certificate), str(key))
    client = ssl.create_default_context(cafile=str(ca))
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=name)
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    done = [False, False]
    for _ in range(20):
        for i, (end, out, peer_in) in enumerate(((c, c_out, s_in), (srv, s_out, c_in))):
            if not done[i]:
                try:
                    end.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLCertVerificationError as exc:
                    return str(exc.verify_message or exc)
                except ssl.SSLError as exc:
                    if i == 0:
                        return str(exc)
                    done[i] = True  # the server end's view of a client that gave up
            data = out.read()
            if data:
                peer_in.write(data)
        if all(done):
            return None
    return "the handshake did not finish"


def _first_dns_name(cert: x509.Certificate) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    names = san.get_values_for_type(x509.DNSName)
    return next((n for n in names if not n.startswith("*.")), names[0] if names else None)


def make_tls(private_dir: Path, vip: str, key_type: str, own: OwnCertificate | None = None) -> TLSFiles:
    """Create a CA and a server certificate for ``vip`` in ``private_dir`` (or install the user's, ``own``)."""
    private_dir.mkdir(parents=True, exist_ok=True)
    if own is not None:
        return _install_own(private_dir, own)
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


def _install_own(private_dir: Path, own: OwnCertificate) -> TLSFiles:
    """The user's certificate, key and CA in the lab's private folder, laid out like the run's own."""
    files = TLSFiles(ca_pem=private_dir / "ca.pem", server_crt=private_dir / "server.crt", server_pem=private_dir / "server.pem")
    files.ca_pem.write_bytes(Path(own.ca).read_bytes())
    # re-encoded from the parsed certificates: a key pasted into the certificate's file cannot come along
    certs = x509.load_pem_x509_certificates(Path(own.certificate).read_bytes())
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    files.server_crt.write_bytes(chain)
    fd = os.open(files.server_pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(chain + Path(own.key).read_bytes())
    return files

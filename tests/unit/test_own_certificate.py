"""A user's own certificate, key and CA (tls.certificate/key/ca): checked as a client would, keys kept out of reports."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from bench.errors import UserError
from bench.spec import load_topology
from bench.tls import check_own_certificate, make_tls
from bench.topology.lab import own_certificate


def own(tmp_path: Path, name: str = "www.example.test", intermediate: bool = True, **kwargs: object) -> list[str]:
    """Write a certificate issued for ``name`` (through an intermediate CA), its key and its root; return the --set lines."""
    root = trustme.CA()
    issuer = root.create_child_ca() if intermediate else root
    cert = issuer.issue_cert(name, **kwargs)  # type: ignore[arg-type]
    (tmp_path / "chain.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))  # the leaf, then the intermediate
    (tmp_path / "key.pem").write_bytes(cert.private_key_pem.bytes())
    root.cert_pem.write_to_path(str(tmp_path / "root.pem"))
    return [f"tls.certificate={tmp_path / 'chain.pem'}", f"tls.key={tmp_path / 'key.pem'}", f"tls.ca={tmp_path / 'root.pem'}"]


def check(sets: list[str]) -> tuple[list[str], str | None]:
    topo, _ = load_topology("split", None, sets)
    own = own_certificate(topo)
    assert own is not None
    problems, name = check_own_certificate(own)
    return [p for p, _ in problems], name


def test_a_good_chain_through_an_intermediate_verifies_for_its_name(tmp_path: Path) -> None:
    sets = own(tmp_path)
    assert check(sets) == ([], "www.example.test")
    # installed like the run's own material: the chain public, the key only in the private folder
    topo, _ = load_topology("split", None, sets)
    files = make_tls(tmp_path / "private", "198.18.0.100", "ecdsa-p256", own_certificate(topo))
    assert b"PRIVATE KEY" not in files.server_crt.read_bytes() and files.server_crt.read_bytes().count(b"BEGIN CERTIFICATE") == 2
    assert b"PRIVATE KEY" in files.server_pem.read_bytes() and (files.server_pem.stat().st_mode & 0o077) == 0
    assert files.ca_pem.read_bytes() == (tmp_path / "root.pem").read_bytes()


def test_each_mistake_is_named(tmp_path: Path) -> None:
    sets = own(tmp_path)
    # the chain without its intermediate
    full = (tmp_path / "chain.pem").read_bytes()
    (tmp_path / "leaf.pem").write_bytes(full[: full.index(b"-----END CERTIFICATE-----") + 26])
    found, _ = check([f"tls.certificate={tmp_path / 'leaf.pem'}", *sets[1:]])
    assert len(found) == 1 and "does not verify for 'www.example.test'" in found[0]
    # a name it does not carry
    found, _ = check([*sets, "tls.server_name=other.example.test"])
    assert len(found) == 1 and "'other.example.test'" in found[0]
    # expired
    (tmp_path / "old").mkdir()
    expired = own(tmp_path / "old", not_before=dt.datetime(2020, 1, 1), not_after=dt.datetime(2021, 1, 1))
    found, _ = check(expired)
    assert len(found) == 1 and "certificate has expired" in found[0]
    # another key
    (tmp_path / "other").mkdir()
    other = own(tmp_path / "other")
    found, _ = check([sets[0], other[1], sets[2]])
    assert any("is not the key of" in p for p in found)
    # another CA
    found, _ = check([sets[0], sets[1], other[2]])
    assert len(found) == 1 and "does not verify" in found[0]
    # an encrypted key, a missing file
    key = serialization.load_pem_private_key((tmp_path / "key.pem").read_bytes(), None)
    (tmp_path / "enc.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    assert "the key is encrypted" in check([sets[0], f"tls.key={tmp_path / 'enc.pem'}", sets[2]])[0][0]
    assert "no such file" in check([sets[0], sets[1], f"tls.ca={tmp_path / 'nope.pem'}"])[0][0].lower()


def test_a_certificate_without_a_dns_name_needs_server_name(tmp_path: Path) -> None:
    sets = own(tmp_path, name="192.0.2.7", intermediate=False)
    found, name = check(sets)
    assert name is None and "names no DNS name" in found[0]
    assert check([*sets, "tls.server_name=192.0.2.7"]) == ([], "192.0.2.7")


def test_all_three_or_none(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="certificate given without ca, key"):
        load_topology("split", None, [f"tls.certificate={tmp_path / 'c.pem'}"])
    with pytest.raises(UserError, match="server_name: only used with your own certificate"):
        load_topology("split", None, ["tls.server_name=x.test"])

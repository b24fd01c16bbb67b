"""Cryptosign key files (wampd/keys.py): every form a user has at hand, made by the tools
that make them (ssh-keygen, openssl, wampd keygen), and what is refused, and why."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from autobahn.wamp.types import Challenge
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from nacl.signing import SigningKey, VerifyKey

from wampd.keys import (
    BadKey,
    Cryptosign,
    PrivateKey,
    generate,
    load_private_key,
    write_key_pair,
)

SEED = bytes(range(1, 33))
PUBLIC = SigningKey(SEED).verify_key.encode().hex()

#: Fails (never skips) without ssh-keygen: tests/unit/conftest.py's ``tool`` marker.
needs_ssh_keygen = pytest.mark.tool("ssh-keygen")


def private(path: Path, data: bytes | str, mode: int = 0o600) -> str:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return str(path)


def ssh_keygen(path: Path, *args: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-C", "edge-7", "-f", str(path), *args],
        check=True,
        capture_output=True,
    )
    return str(path)


@pytest.mark.parametrize(
    ("form", "data"),
    [
        ("raw", SEED),
        ("hex", SEED.hex() + "\n"),
        ("hex", "  " + SEED.hex().upper() + "  \n"),
        (
            "autobahn",
            f"comment line\n\npublic-key-ed25519: {PUBLIC}\nprivate-key-ed25519: {SEED.hex()}\n",
        ),
        (
            "pkcs8",
            Ed25519PrivateKey.from_private_bytes(SEED).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
        (
            "openssh",
            Ed25519PrivateKey.from_private_bytes(SEED).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            ),
        ),
    ],
)
def test_every_form_gives_the_same_key(tmp_path: Path, form: str, data: bytes | str) -> None:
    key = load_private_key(private(tmp_path / "key", data))
    assert (key.form, key.seed, key.public_hex) == (form, SEED, PUBLIC)


@needs_ssh_keygen
def test_a_key_made_by_ssh_keygen(tmp_path: Path) -> None:
    path = ssh_keygen(tmp_path / "id_ed25519", "-N", "")
    key = load_private_key(path)
    assert key.form == "openssh"
    # The public half ssh-keygen wrote is the same key.
    public_line = (tmp_path / "id_ed25519.pub").read_text().split()[1]
    public = serialization.load_ssh_public_key(f"ssh-ed25519 {public_line}".encode())
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw.hex() == key.public_hex


@needs_ssh_keygen
def test_an_encrypted_openssh_key_says_how_to_decrypt_it(tmp_path: Path) -> None:
    path = ssh_keygen(tmp_path / "id_ed25519", "-N", "a passphrase")
    with pytest.raises(BadKey) as info:
        load_private_key(path)
    text = str(info.value)
    assert path in text and "encrypted with a passphrase" in text
    assert "ssh-keygen -p -N '' -f COPY" in text


def test_an_encrypted_pem_key_says_how_to_decrypt_it(tmp_path: Path) -> None:
    pem = Ed25519PrivateKey.from_private_bytes(SEED).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    )
    path = private(tmp_path / "key.pem", pem)
    with pytest.raises(BadKey, match=r"encrypted.*openssl pkey -in .*key.pem -out COPY"):
        load_private_key(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_a_key_open_to_group_or_others_is_refused_naming_file_and_mode(
    tmp_path: Path, mode: int
) -> None:
    path = private(tmp_path / "key", SEED.hex(), mode)
    with pytest.raises(BadKey) as info:
        load_private_key(path)
    assert path in str(info.value) and f"mode {mode:04o}" in str(info.value)
    assert f"chmod 600 {path}" in str(info.value)


def test_modes_of_the_owner_alone_are_fine(tmp_path: Path) -> None:
    for mode in (0o600, 0o400):
        assert load_private_key(private(tmp_path / f"k{mode:o}", SEED, mode)).seed == SEED


def test_a_symlink_is_judged_by_its_target(tmp_path: Path) -> None:
    """Kubernetes mounts a Secret's keys as symlinks into ..data/: the file counts."""
    target = private(tmp_path / "real", SEED.hex(), 0o400)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert load_private_key(str(link)).seed == SEED
    os.chmod(target, 0o644)
    with pytest.raises(BadKey, match="mode 0644"):
        load_private_key(str(link))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is not a key wampd reads: expected a raw 32-byte seed"),
        (b"\x00" * 31, "is not a key wampd reads"),
        ("ab" * 31, "is not a key wampd reads"),
        ("zz" * 32, "is not a key wampd reads"),
        (f"public-key-ed25519: {PUBLIC}\n", "holds only a public key"),
        ("private-key-ed25519: 1234\n", "private-key-ed25519 is not 64 hex characters"),
        (f"ssh-ed25519 AAAAC3Nza {PUBLIC}\n", "holds a public key"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nbm9wZQ==\n-----END OPENSSH PRIVATE KEY-----\n",
            "is not a valid OpenSSH private key",
        ),
        (b"\xff" * 100, "is not a key wampd reads"),
    ],
)
def test_what_is_not_a_private_key_says_so(tmp_path: Path, data: bytes | str, message: str) -> None:
    path = private(tmp_path / "key", data)
    with pytest.raises(BadKey, match=message) as info:
        load_private_key(path)
    assert path in str(info.value)


def test_an_rsa_key_is_refused_as_not_ed25519(tmp_path: Path) -> None:
    rsa = generate_private_key(public_exponent=65537, key_size=1024)
    for fmt in (serialization.PrivateFormat.OpenSSH, serialization.PrivateFormat.PKCS8):
        data = rsa.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        with pytest.raises(BadKey, match="is a RSA key; cryptosign needs an Ed25519 key"):
            load_private_key(private(tmp_path / "rsa", data))


def test_missing_or_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(BadKey, match=r"cannot read the key file .*: No such file"):
        load_private_key(str(tmp_path / "nope"))
    with pytest.raises(BadKey, match="is not a regular file"):
        load_private_key(str(tmp_path))


def test_the_seed_never_shows(tmp_path: Path) -> None:
    key = load_private_key(private(tmp_path / "key", SEED))
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert SEED.hex() not in text and repr(SEED) not in text and "seed=" not in text


def test_write_key_pair_is_private_and_reads_back(tmp_path: Path) -> None:
    key = generate()
    path = str(tmp_path / "wampd.key")
    public = write_key_pair(path, key, comment="edge-7")
    assert public == key.public_hex and len(public) == 64
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path + ".pub").st_mode & 0o777 == 0o644
    back = load_private_key(path)
    assert (back.form, back.seed) == ("autobahn", key.seed)
    assert key.seed_hex not in (tmp_path / "wampd.key.pub").read_text()
    assert public in (tmp_path / "wampd.key.pub").read_text()


def test_write_key_pair_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "wampd.key"
    path.write_text("precious")
    with pytest.raises(FileExistsError, match="never overwrites"):
        write_key_pair(str(path), generate())
    assert path.read_text() == "precious" and not (tmp_path / "wampd.key.pub").exists()
    (tmp_path / "other.key.pub").write_text("precious too")
    with pytest.raises(FileExistsError):
        write_key_pair(str(tmp_path / "other.key"), generate())
    assert not (tmp_path / "other.key").exists()


def test_keys_are_random() -> None:
    assert isinstance(generate(), PrivateKey)
    assert generate().seed != generate().seed


# -- the answer to a challenge ---------------------------------------------------------------


class Details:
    def __init__(self, channel_id: dict[str, bytes]) -> None:
        self.channel_id = channel_id


class Transport:
    def __init__(self, channel_id: dict[str, bytes]) -> None:
        self.transport_details = Details(channel_id)


class Session:
    def __init__(self, channel_id: dict[str, bytes] | None = None) -> None:
        self._transport = Transport(channel_id or {})


def challenged(challenge: bytes) -> Challenge:
    return Challenge("cryptosign", {"challenge": challenge.hex()})


def test_the_answer_is_the_signature_of_the_challenge_then_the_challenge() -> None:
    auth = Cryptosign(SEED, authextra={"device": "edge-7"})
    assert auth.name == "cryptosign"
    assert auth.authextra == {"device": "edge-7", "pubkey": PUBLIC}
    challenge = bytes(range(100, 132))
    answer = bytes.fromhex(
        auth.on_challenge(Session(), Challenge("cryptosign", {"challenge": challenge.hex()}))
    )
    assert len(answer) == 96 and answer[64:] == challenge
    VerifyKey(bytes.fromhex(PUBLIC)).verify(answer[64:], answer[:64])  # raises if wrong
    assert SEED.hex() not in repr(auth)


def test_tls_unique_signs_the_challenge_xor_the_channel_id() -> None:
    auth = Cryptosign(SEED, channel_binding="tls-unique")
    assert auth.authextra["channel_binding"] == "tls-unique"
    challenge, channel = bytes(range(32)), bytes([0xFF] * 32)
    session = Session({"tls-unique": channel})
    answer = bytes.fromhex(
        auth.on_challenge(session, Challenge("cryptosign", {"challenge": challenge.hex()}))
    )
    signed = bytes(a ^ b for a, b in zip(challenge, channel, strict=True))
    assert answer[64:] == signed
    VerifyKey(bytes.fromhex(PUBLIC)).verify(signed, answer[:64])
    with pytest.raises(ValueError, match=r"TLS 1\.3 has none"):
        auth.on_challenge(Session(), challenged(challenge))


@pytest.mark.parametrize("extra", [{}, {"challenge": "abcd"}, {"challenge": 7}])
def test_a_malformed_challenge_is_refused(extra: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not 32 bytes in hex"):
        Cryptosign(SEED).on_challenge(Session(), Challenge("cryptosign", extra))

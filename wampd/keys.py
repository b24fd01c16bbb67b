"""Cryptosign (Ed25519) keys: reading a private key file, ``wampd keygen``, and the answer
to a router's challenge (:class:`Cryptosign`, autobahn's authenticator interface, without
the dependencies of autobahn's own, which its "encryption" extra brings).

A key file may hold the key in any of the forms users have at hand:

- the raw 32-byte seed (``head -c 32 /dev/urandom``);
- the seed as 64 hexadecimal characters;
- an OpenSSH private key (``ssh-keygen -t ed25519``), unencrypted;
- a PKCS#8 PEM private key (``openssl genpkey -algorithm ed25519``), unencrypted;
- autobahn's key file (``private-key-ed25519: <hex>`` lines), which ``wampd keygen``
  writes.

As ``ssh`` does, a private key file that its group or others may read is refused; an
encrypted key is refused with the command that decrypts a copy. The seed is kept in a
:class:`PrivateKey`, whose ``repr()`` never shows it, and is never logged or printed.
"""

from __future__ import annotations

import binascii
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey

__all__ = [
    "BadKey",
    "Cryptosign",
    "PrivateKey",
    "generate",
    "load_private_key",
    "write_key_pair",
]

#: A key file is a few hundred bytes; anything much larger is not one.
MAX_KEY_FILE: Final = 64 * 1024

_HEX_SEED: Final = re.compile(r"[0-9a-fA-F]{64}")
_FIELD: Final = re.compile(r"^\s*([a-z0-9-]+)\s*:\s*(\S+)\s*$", re.MULTILINE)

_OPENSSH: Final = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_PKCS8: Final = b"-----BEGIN PRIVATE KEY-----"
_PKCS8_ENCRYPTED: Final = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"
_FORMS: Final = (
    "a raw 32-byte seed, 64 hex characters, an OpenSSH ed25519 private key, a PKCS#8 PEM "
    "Ed25519 private key, or autobahn's key file (private-key-ed25519: ...)"
)


class BadKey(ValueError):
    """A key file wampd cannot use; the message names the file and says what to do."""


@dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 private key: its 32-byte seed (never shown) and where it came from."""

    seed: bytes = field(repr=False)
    #: The file it was read from, and the form it was in ("openssh", "hex", ...).
    path: str = ""
    form: str = ""

    @property
    def public_hex(self) -> str:
        """The public key as 64 hex characters: what Crossbar's ``authorized_keys`` take."""
        return SigningKey(self.seed).verify_key.encode().hex()

    @property
    def seed_hex(self) -> str:
        """The seed in hex, as autobahn's cryptosign authenticator takes it."""
        return self.seed.hex()


def load_private_key(path: str) -> PrivateKey:
    """Read the private key in ``path``; raises :class:`BadKey` saying what is wrong."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise BadKey(f"cannot read the key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise BadKey(f"the key file {path} is not a regular file")
    if mode & 0o077:
        raise BadKey(
            f"the key file {path} is open to its group or others (mode "
            f"{stat.S_IMODE(mode):04o}); a private key must be readable by its owner only: "
            f"chmod 600 {path} (in Kubernetes, where a Secret's files are group-readable, "
            "copy it with install -m 0400 in an init container: see deploy/kubernetes)"
        )
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise BadKey(f"cannot read the key file {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise BadKey(f"the key file {path} is larger than {MAX_KEY_FILE} bytes: not a key")
    form, seed = _parse(data, path)
    return PrivateKey(seed, path, form)


def _parse(data: bytes, path: str) -> tuple[str, bytes]:
    """The form and the seed of a key file's ``data``."""
    text = data.strip()
    if text.startswith(_OPENSSH):
        return "openssh", _openssh(text, path)
    if text.startswith(_PKCS8_ENCRYPTED):
        raise BadKey(
            f"the key in {path} is encrypted; wampd needs it unencrypted: decrypt a copy "
            f"with `openssl pkey -in {path} -out COPY` (then chmod 600 COPY) and name the copy"
        )
    if text.startswith(_PKCS8):
        return "pkcs8", _pkcs8(text, path)
    if text.startswith((b"ssh-ed25519 ", b"-----BEGIN OPENSSH PUBLIC", b"-----BEGIN PUBLIC")):
        raise BadKey(f"{path} holds a public key; cryptosign needs the private key")
    if len(data) == 32:
        return "raw", data
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        raise BadKey(f"{path} is not a key wampd reads: expected {_FORMS}") from None
    if _HEX_SEED.fullmatch(decoded):
        return "hex", binascii.a2b_hex(decoded)
    fields = dict(_FIELD.findall(decoded))
    if "private-key-ed25519" in fields:
        value = fields["private-key-ed25519"]
        if not _HEX_SEED.fullmatch(value):
            raise BadKey(f"{path}: private-key-ed25519 is not 64 hex characters")
        return "autobahn", binascii.a2b_hex(value)
    if "public-key-ed25519" in fields:
        raise BadKey(
            f"{path} holds only a public key (public-key-ed25519); cryptosign needs the "
            "private key (private-key-ed25519)"
        )
    raise BadKey(f"{path} is not a key wampd reads: expected {_FORMS}")


def _openssh_cipher(text: bytes) -> bytes | None:
    """The cipher an OpenSSH private key is encrypted with (``b"none"``: it is not); None
    if the file is not in OpenSSH's format."""
    try:
        raw = binascii.a2b_base64(b"".join(text.splitlines()[1:-1]))
    except binascii.Error:
        return None
    magic = b"openssh-key-v1\0"
    if not raw.startswith(magic) or len(raw) < len(magic) + 4:
        return None
    size = int.from_bytes(raw[len(magic) : len(magic) + 4], "big")
    return raw[len(magic) + 4 : len(magic) + 4 + size]


def _openssh(text: bytes, path: str) -> bytes:
    cipher = _openssh_cipher(text)
    if cipher is not None and cipher != b"none":
        raise BadKey(
            f"the OpenSSH key in {path} is encrypted with a passphrase "
            f"({cipher.decode('ascii', 'replace')}); wampd needs it "
            f"unencrypted: decrypt a copy with `cp {path} COPY && ssh-keygen -p -N '' -f COPY` "
            "(then chmod 600 COPY) and name the copy"
        )
    try:
        key = serialization.load_ssh_private_key(text, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, binascii.Error) as exc:
        raise BadKey(f"{path} is not a valid OpenSSH private key: {exc}") from None
    return _ed25519_seed(key, path, "OpenSSH")


def _pkcs8(text: bytes, path: str) -> bytes:
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadKey(f"{path} is not a valid PEM private key: {exc}") from None
    return _ed25519_seed(key, path, "PEM")


def _ed25519_seed(key: object, path: str, form: str) -> bytes:
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.removeprefix("_").replace("PrivateKey", "")
        raise BadKey(
            f"the {form} key in {path} is a {kind} key; cryptosign needs an Ed25519 key "
            "(ssh-keygen -t ed25519, or wampd keygen)"
        )
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def generate() -> PrivateKey:
    """A new random key."""
    return PrivateKey(bytes(SigningKey.generate()), form="autobahn")


def write_key_pair(path: str, key: PrivateKey, *, comment: str = "") -> str:
    """Write ``key`` to ``path`` (created, mode 0600, never overwriting a file) in
    autobahn's key file form, and its public half to ``path.pub``; the public key's hex.
    Raises ``FileExistsError`` (naming the file) if either exists."""
    public = key.public_hex
    header = f"wampd cryptosign key{': ' + comment if comment else ''}\n\n"
    private_text = f"{header}public-key-ed25519: {public}\nprivate-key-ed25519: {key.seed_hex}\n"
    public_text = f"{header}public-key-ed25519: {public}\n"
    for target in (path, path + ".pub"):
        if os.path.lexists(target):
            raise FileExistsError(f"{target} exists; wampd keygen never overwrites a key")
    _write_new(path, private_text, 0o600)
    _write_new(path + ".pub", public_text, 0o644)
    return public


def _write_new(path: str, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, mode)  # whatever the umask


class Cryptosign:
    """WAMP-cryptosign for one session: ``authextra`` carries the public key (and the
    channel binding), :meth:`on_challenge` signs the router's 32-byte challenge -- XORed
    with the TLS channel's ``tls-unique`` id when that binding is asked for -- and answers
    the signature followed by the message signed, in hex (96 bytes)."""

    name = "cryptosign"

    def __init__(
        self,
        seed: bytes,
        *,
        authextra: Mapping[str, Any] | None = None,
        channel_binding: str | None = None,
    ) -> None:
        self._key = SigningKey(seed)
        self._binding = channel_binding
        extra = {**(authextra or {}), "pubkey": self._key.verify_key.encode().hex()}
        if channel_binding is not None:
            extra["channel_binding"] = channel_binding
        self.authextra: dict[str, Any] = extra

    def __repr__(self) -> str:
        return f"Cryptosign(pubkey={self.authextra['pubkey']})"

    def on_challenge(self, session: Any, challenge: Any) -> str:
        """The answer to ``challenge`` (raises ``ValueError`` for one it cannot sign)."""
        raw = challenge.extra.get("challenge") if isinstance(challenge.extra, dict) else None
        if not (isinstance(raw, str) and _HEX_SEED.fullmatch(raw)):
            raise ValueError(f"the router's cryptosign challenge is not 32 bytes in hex: {raw!r}")
        data = binascii.a2b_hex(raw)
        if self._binding is not None:
            channel_id = _channel_id(session, self._binding)
            data = bytes(a ^ b for a, b in zip(data, channel_id, strict=True))
        signature = self._key.sign(data).signature
        return (signature + data).hex()

    def on_welcome(self, session: Any, authextra: Any) -> None:
        """Nothing to check in the WELCOME."""
        return None


def _channel_id(session: Any, binding: str) -> bytes:
    details = getattr(getattr(session, "_transport", None), "transport_details", None)
    ids = getattr(details, "channel_id", None) or {}
    channel_id = ids.get(binding)
    if not isinstance(channel_id, bytes) or len(channel_id) != 32:
        raise ValueError(
            f"channel_binding = {binding!r}, but the connection has no {binding} channel id "
            '(TLS 1.3 has none: use TLS 1.2, or channel_binding = "none")'
        )
    return channel_id

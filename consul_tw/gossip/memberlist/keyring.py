# -*- test-case-name: tests.unit.gossip.test_keyring -*-
"""
memberlist's keyring and its AES-GCM packet and stream encryption.

The keyring is an ordered list of AES keys (16, 24 or 32 bytes); the first
is the *primary*.  Everything we send is sealed with the primary, and
everything we receive is tried against every key in order, which is what
lets a pool rotate keys without a flag day: install the new key everywhere,
make it primary everywhere, then remove the old one.

Two framings, both written by memberlist 0.2.2 (wire reference section 6):

* UDP datagram: ``version(1) | nonce(12) | ciphertext + tag(16)``, with no
  associated data.  Version 1 is what protocol >= 2 writes; version 0 (old
  protocol 1) also PKCS#7-pads the plaintext, and is accepted on input.
* TCP stream: ``0x0a | length(u32 BE) | <a sealed payload as above>``,
  where ``length`` counts everything after the 5-byte header and those 5
  header bytes are the GCM associated data.

Decryption failures raise :class:`DecryptError` (a
:class:`~consul_tw.gossip.gomsgpack.WireError`) whose text is memberlist's
own, so a stream handler can put ``str(error)`` straight into the ``err``
reply serf expects.  Nonces come from an injected ``random_bytes`` so tests
can pin them.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Iterable

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consul_tw.gossip.gomsgpack import WireError

KEY_SIZES = (16, 24, 32)
VERSION_SIZE = 1
NONCE_SIZE = 12
TAG_SIZE = 16
BLOCK_SIZE = 16
#: The version memberlist protocol >= 2 writes (no padding).
ENCRYPTION_VERSION = 1
MAX_ENCRYPTION_VERSION = 1
#: The memberlist message type of an encrypted stream.
ENCRYPT_MSG = 0x0A
STREAM_HEADER_SIZE = 5
#: memberlist refuses encrypted stream payloads larger than this.
MAX_STREAM_BYTES = 20 * 1024 * 1024

NO_KEY_TEXT = "No installed keys could decrypt the message"
NOT_ENCRYPTED_TEXT = "Encryption is configured but remote state is not encrypted"

RandomBytes = Callable[[int], bytes]


class InvalidKey(ValueError):
    """A configured or requested key is not base64 or not an AES key size."""


class KeyringError(ValueError):
    """A key rotation step that memberlist refuses (texts are memberlist's)."""


class DecryptError(WireError):
    """Bytes no installed key opens, or that are not a sealed payload at all."""


def validate_key(key: bytes) -> bytes:
    """``key`` itself, if AES accepts its size."""
    if len(key) not in KEY_SIZES:
        raise InvalidKey(f"key size must be 16, 24 or 32 bytes, not {len(key)}")
    return bytes(key)


def decode_key(key: str) -> bytes:
    """A base64 key as given to ``-encrypt`` or ``keyring -install``, validated."""
    try:
        decoded = base64.b64decode(key.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey(f"key is not valid base64: {key!r}") from None
    return validate_key(decoded)


def generate_key(random_bytes: RandomBytes = os.urandom) -> str:
    """A fresh AES-256 key in base64, as ``consul keygen`` and ``serf keygen`` print."""
    return base64.b64encode(random_bytes(32)).decode("ascii")


def encrypted_length(version: int, size: int) -> int:
    """The sealed size of ``size`` plaintext bytes (version 0 adds 1-16 padding)."""
    padding = BLOCK_SIZE - size % BLOCK_SIZE if version == 0 else 0
    return VERSION_SIZE + NONCE_SIZE + size + padding + TAG_SIZE


def _as_key(key: bytes | str) -> bytes:
    """Text is base64 (configuration, HTTP API); bytes are a raw key (Serf queries)."""
    return decode_key(key) if isinstance(key, str) else validate_key(key)


def _initial_keys(keys: Iterable[bytes]) -> list[bytes]:
    """Validated, without duplicates (memberlist ignores re-adding a key)."""
    unique: list[bytes] = []
    for key in map(validate_key, keys):
        if key not in unique:
            unique.append(key)
    if not unique:
        raise InvalidKey("a keyring needs at least one key")
    return unique


@attrs.define(eq=False)
class Keyring:
    """
    Ordered AES keys; ``keys[0]`` is the primary.

    Mutable on purpose: the ``_serf_*-key`` queries and ``consul keyring``
    rotate keys in a running pool.  The repr hides the keys so that logging
    a keyring never leaks one.
    """

    _keys: list[bytes] = attrs.field(converter=_initial_keys, repr=False)
    random_bytes: RandomBytes = attrs.field(default=os.urandom, repr=False)
    _ciphers: dict[bytes, AESGCM] = attrs.field(factory=dict, init=False, repr=False)

    @classmethod
    def from_base64(cls, keys: Iterable[str], random_bytes: RandomBytes = os.urandom) -> Keyring:
        """A keyring from configured base64 keys, the first being the primary."""
        return cls(keys=[decode_key(k) for k in keys], random_bytes=random_bytes)

    def __repr__(self) -> str:
        return f"<Keyring with {len(self._keys)} key(s)>"

    # -- keys ---------------------------------------------------------------

    @property
    def keys(self) -> tuple[bytes, ...]:
        return tuple(self._keys)

    @property
    def primary(self) -> bytes:
        return self._keys[0]

    def keys_base64(self) -> list[str]:
        return [base64.b64encode(k).decode("ascii") for k in self._keys]

    def primary_base64(self) -> str:
        return base64.b64encode(self.primary).decode("ascii")

    def install(self, key: bytes | str) -> None:
        """Add a secondary key (a no-op when it is already installed)."""
        key = _as_key(key)
        if key not in self._keys:
            self._keys.append(key)

    def use(self, key: bytes | str) -> None:
        """Make an installed key the primary; the others keep their order."""
        key = _as_key(key)
        if key not in self._keys:
            raise KeyringError("Requested key is not in the keyring")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove(self, key: bytes | str) -> None:
        """Drop a secondary key (a no-op when it is not installed, as in memberlist)."""
        key = _as_key(key)
        if key == self.primary:
            raise KeyringError("Removing the primary key is not allowed")
        if key in self._keys:
            self._keys.remove(key)
            self._ciphers.pop(key, None)

    # -- sealing -----------------------------------------------------------

    def _cipher(self, key: bytes) -> AESGCM:
        cipher = self._ciphers.get(key)
        if cipher is None:
            cipher = self._ciphers[key] = AESGCM(key)
        return cipher

    def _seal(self, plaintext: bytes, aad: bytes | None, version: int) -> bytes:
        if version not in (0, 1):
            raise ValueError(f"unsupported encryption version {version}")
        if version == 0:
            pad = BLOCK_SIZE - len(plaintext) % BLOCK_SIZE
            plaintext = bytes(plaintext) + bytes([pad]) * pad
        nonce = self.random_bytes(NONCE_SIZE)
        if len(nonce) != NONCE_SIZE:
            raise ValueError("random_bytes returned the wrong number of bytes")
        return bytes([version]) + nonce + self._cipher(self.primary).encrypt(nonce, plaintext, aad)

    def _open(self, sealed: bytes, aad: bytes | None) -> bytes:
        """memberlist's decryptPayload: sanity checks, then every key in order."""
        if not sealed:
            raise DecryptError("Cannot decrypt empty payload")
        version = sealed[0]
        if version > MAX_ENCRYPTION_VERSION:
            raise DecryptError(f"Unsupported encryption version {version}")
        if len(sealed) < encrypted_length(version, 0):
            raise DecryptError(f"Payload is too small to decrypt: {len(sealed)}")
        nonce = bytes(sealed[VERSION_SIZE : VERSION_SIZE + NONCE_SIZE])
        body = bytes(sealed[VERSION_SIZE + NONCE_SIZE :])
        for key in self._keys:
            try:
                plain = self._cipher(key).decrypt(nonce, body, aad)
            except InvalidTag:
                continue
            return _unpad(plain) if version == 0 else plain
        raise DecryptError(NO_KEY_TEXT)

    def encrypt_packet(self, plaintext: bytes, *, version: int = ENCRYPTION_VERSION) -> bytes:
        """A whole UDP datagram sealed with the primary key."""
        return self._seal(plaintext, None, version)

    def decrypt_packet(self, data: bytes) -> bytes:
        """The plaintext of a UDP datagram, or :class:`DecryptError`."""
        return self._open(data, None)

    def encrypt_stream(self, plaintext: bytes, *, version: int = ENCRYPTION_VERSION) -> bytes:
        """One encrypted stream message (header + sealed payload) for a TCP connection."""
        length = encrypted_length(version, len(plaintext))
        if length > MAX_STREAM_BYTES:
            raise ValueError(f"stream message of {length} bytes exceeds the peer's limit")
        header = bytes([ENCRYPT_MSG]) + length.to_bytes(4, "big")
        return header + self._seal(plaintext, header, version)

    def decrypt_stream(self, data: bytes) -> tuple[bytes, int] | None:
        """
        ``(plaintext, bytes consumed)`` from the start of a TCP stream.

        Returns ``None`` while ``data`` holds only part of the message, so a
        protocol can call it on its growing buffer after every read.  An
        oversized length is refused as soon as the header is in, before
        buffering it, as memberlist does; a stream that does not start with
        the encrypt type is refused with the text memberlist replies with.
        """
        if not data:
            return None
        if data[0] != ENCRYPT_MSG:
            raise DecryptError(NOT_ENCRYPTED_TEXT)
        if len(data) < STREAM_HEADER_SIZE:
            return None
        length = int.from_bytes(data[1:STREAM_HEADER_SIZE], "big")
        if length > MAX_STREAM_BYTES:
            raise DecryptError(f"Remote node state is larger than limit ({length})")
        end = STREAM_HEADER_SIZE + length
        if len(data) < end:
            return None
        header = bytes(data[:STREAM_HEADER_SIZE])
        return self._open(data[STREAM_HEADER_SIZE:end], header), end


def _unpad(plain: bytes) -> bytes:
    """Strip version 0's PKCS#7 padding (its length is authenticated by then)."""
    pad = plain[-1] if plain else 0
    if not 1 <= pad <= min(BLOCK_SIZE, len(plain)):
        raise DecryptError("Invalid PKCS#7 padding")
    return plain[:-pad]

"""A person's signing key for the CLI: an Ed25519 private key in a passphrase-protected file in
their own config folder (`$DEW_CONFIG_DIR/keys/PERSON.ed25519.pem`, mode 600), never on the
server. The passphrase is asked at the terminal, or read from `DEW_KEY_PASSPHRASE` (for scripts:
an environment is less private than a prompt).

The file is in OpenSSH's format, encrypted under a key derived with bcrypt_pbkdf (KDF_ROUNDS
rounds, as `ssh-keygen -a`): PKCS#8's "best available" encryption derives it with 2,048 rounds of
PBKDF2, which a stolen file would not hold out against for long.
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from dew.agents.errors import InputInvalid
from dew.guardians.errors import SignatureRefused

from .remote import config_dir

MIN_PASSPHRASE = 10
KDF_ROUNDS = 32  # about a quarter of a second to open the key here; each guess at it costs as much


def key_file(person: str) -> Path:
    return config_dir() / "keys" / f"{person}.ed25519.pem"


def passphrase(*, confirm: bool) -> str:
    given = os.environ.get("DEW_KEY_PASSPHRASE")
    if given is None:
        if not sys.stdin.isatty():
            raise InputInvalid("no terminal to ask for the key's passphrase; set DEW_KEY_PASSPHRASE")
        given = getpass.getpass("Passphrase of your signing key: ")
        if confirm and getpass.getpass("Passphrase (again): ") != given:
            raise InputInvalid("the two passphrases differ")
    if len(given) < MIN_PASSPHRASE:
        raise InputInvalid(f"a signing key's passphrase has at least {MIN_PASSPHRASE} characters")
    return given


def create(person: str, path: Path | None = None) -> tuple[Ed25519PrivateKey, Path]:
    """A new key, written encrypted under a passphrase; refuses to overwrite a key file."""
    path = path or key_file(person)
    if path.exists():
        raise InputInvalid(f"{path} already holds a signing key; use 'dew keys rotate' to replace it")
    secret = passphrase(confirm=True)
    key = Ed25519PrivateKey.generate()
    encryption = serialization.PrivateFormat.OpenSSH.encryption_builder().kdf_rounds(KDF_ROUNDS)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, encryption.build(secret.encode("utf-8"))
    )
    write_private(path, pem)
    return key, path


def write_private(path: Path, pem: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)  # a leftover keeps its own mode: start afresh, and follow no link
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, stat.S_IRUSR | stat.S_IWUSR)  # never readable by others
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.replace(tmp, path)


def load(person: str, path: Path | None = None) -> Ed25519PrivateKey:
    path = path or key_file(person)
    if not path.exists():
        raise SignatureRefused(f"{person} has no signing key at {path}: create one with 'dew keys create'")
    data, secret = path.read_bytes(), passphrase(confirm=False).encode("utf-8")
    key: object
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=secret)
        else:  # a PKCS#8 file
            key = serialization.load_pem_private_key(data, password=secret)
    except (ValueError, TypeError) as e:
        raise SignatureRefused(
            f"cannot open the signing key {path}: wrong passphrase, or not a key file ({e})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureRefused(f"{path} is not an Ed25519 key")
    return key

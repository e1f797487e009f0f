"""TLS options of a connection, and the one place their ``ssl.SSLContext`` is built.

Both the asyncio connections (``connection.open_connection``) and the blocking socket of the
thread-side client (``sync.SyncClient``) take their context from ``ssl_context``.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import Literal

VerifyMode = Literal["required", "optional", "none"]
VERIFY_MODES: tuple[VerifyMode, ...] = ("required", "optional", "none")


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """How to secure a connection: which CA to trust, which certificate to show, what to check."""

    ca_file: str | None = None
    """PEM file of the CA(s) that signed the server's certificate; None: the system's trust store."""
    cert_file: str | None = None
    """PEM file of the client certificate (for servers that check clients); may hold the key too."""
    key_file: str | None = None
    """PEM file of the client certificate's private key (unencrypted)."""
    verify: VerifyMode = "required"
    """``required``: the server's certificate must chain to the CA and name the host connected to;
    ``optional``: it must chain to the CA, its host name is not checked; ``none``: nothing is
    checked (the traffic is encrypted, but the server is not authenticated)."""


@functools.lru_cache(maxsize=16)
def ssl_context(options: TLSOptions) -> ssl.SSLContext:
    """The client-side context for ``options``, built once per process and shared (it is never
    modified after this). Files are read on the first call, so renewed certificates take effect
    after a restart. Raises ``ssl.SSLError`` or ``OSError`` for files that do not load, and
    ``ValueError`` for a passphrase-protected key (there is nobody to type the passphrase)."""
    context = ssl.create_default_context(cafile=options.ca_file)
    if options.verify != "required":
        context.check_hostname = False
    if options.verify == "none":
        context.verify_mode = ssl.CERT_NONE
    if options.cert_file is not None:
        try:
            context.load_cert_chain(options.cert_file, options.key_file, password=_no_passphrase)
        except _Encrypted:
            key = options.key_file or options.cert_file
            raise ValueError(f"the private key in {key} is protected by a passphrase, which cannot be given here; "
                             f"store it unencrypted (openssl pkey -in {key} -out plain.key)") from None
    return context


class _Encrypted(Exception):
    pass


def _no_passphrase() -> str:
    """Called by OpenSSL for an encrypted key instead of prompting on the terminal."""
    raise _Encrypted

"""The one seam every piece of stored customer content (file bytes, later batch results) passes through.

Callers hand plain bytes to `seal` before they write and take them back from `unseal` after they read, so
encryption at rest per account (an AES-256-GCM envelope under a service or customer-managed key) can
arrive here alone: the first byte of every stored blob names its format, old blobs stay readable beside
new ones, and no row needs migrating.
"""

from __future__ import annotations

import base64

# the format markers; an encrypting sealer adds its own and keeps reading PLAIN
PLAIN = b"\x00"


class UnknownSealFormat(ValueError):
    """A stored blob whose format marker this sealer cannot read (written by a newer sealer, or damaged)."""


class ContentSealer:
    """Seals content for storage and unseals it on the way back.

    This default does not encrypt: it writes the one-byte marker `PLAIN` (0x00) before the bytes, and
    refuses, with `UnknownSealFormat`, any blob that starts with another marker or is empty. The account
    is part of the signature because an encrypting sealer picks the account's key with it.
    """

    def seal(self, account_id: str, data: bytes) -> bytes:
        return PLAIN + data

    def unseal(self, account_id: str, blob: bytes) -> bytes:
        marker = blob[:1]
        if marker != PLAIN:
            shown = f"0x{marker.hex()}" if marker else "none (empty blob)"
            raise UnknownSealFormat(f"stored content of account {account_id} has format marker {shown}, "
                                    "which this server cannot read")
        return blob[1:]


# text columns (filtered content) hold a sealed blob in base64 after this prefix; text without it was stored
# before content was sealed and is read as it is
SEALED_TEXT = "sealed:"


def seal_text(sealer: ContentSealer, account_id: str, text: str) -> str:
    return SEALED_TEXT + base64.b64encode(sealer.seal(account_id, text.encode())).decode()


def unseal_text(sealer: ContentSealer, account_id: str, stored: str) -> str:
    if not stored.startswith(SEALED_TEXT):
        return stored
    return sealer.unseal(account_id, base64.b64decode(stored[len(SEALED_TEXT):])).decode()

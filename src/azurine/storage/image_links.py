"""The signed links a generated image is fetched by, as Azure's DALL-E answers link to a blob with a SAS token.

A link names the image, its expiry (unix seconds) and an HMAC-SHA256 over the image id, the account's id and that
expiry, under a key derived from the service key (`AZURINE_SERVICE_KEY` or the data directory's `service.key`), so
every replica that shares the service key checks the links the others made. The link is the credential, as a SAS
URL is: whoever holds it may fetch the image until it expires; a link altered in any part does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from azurine.storage.key_providers.service import load_service_key

PURPOSE = b"azurine image links\x00"


class LinkSigner:
    def __init__(self, service_key: bytes) -> None:
        # a key of its own, so that a link's MAC is never a value the service key computes for anything else
        self._key = hmac.new(service_key, PURPOSE, hashlib.sha256).digest()

    @classmethod
    def open(cls, data_dir: Path) -> LinkSigner:
        return cls(load_service_key(data_dir))

    def sign(self, image_id: str, account_id: str, expires_at: int) -> str:
        message = f"{image_id}\n{account_id}\n{expires_at}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def verify(self, image_id: str, account_id: str, expires_at: int, signature: str) -> bool:
        return hmac.compare_digest(self.sign(image_id, account_id, expires_at).encode(), signature.encode())

"""Generated images, kept in the database every replica shares until their links expire.

An image is one `generated_images` row whose PNG is sealed under the account's data key, as every piece of stored
customer content is. Every read names the account, and an image of another account, or one past its `expires_at`, is
not there; `sweep` removes the expired rows.
"""

from __future__ import annotations

import uuid

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session, sessionmaker

from azurine.storage.content import ContentSealer
from azurine.storage.database import session_factory
from azurine.storage.tables import GeneratedImage

SWEEP_BATCH = 500


def new_image_id() -> str:
    return f"img_{uuid.uuid4().hex}"


class ImageStore:
    def __init__(self, engine: Engine, sealer: ContentSealer | None = None) -> None:
        self.sealer = sealer or ContentSealer()
        self._sessions: sessionmaker[Session] = session_factory(engine)

    def put(self, account_id: str, png: bytes, now: int, expires_at: int) -> str:
        """Store an image of `account_id` until `expires_at` (unix seconds); its id."""
        image_id = new_image_id()
        with self._sessions.begin() as session:
            session.add(GeneratedImage(id=image_id, account_id=account_id, created_at=now, expires_at=expires_at,
                                       body=self.sealer.seal(account_id, png)))
        return image_id

    def get(self, account_id: str, image_id: str, now: float) -> bytes | None:
        """The image's PNG, or None where the account has no such image or its time is up."""
        with self._sessions() as session:
            row = session.scalar(select(GeneratedImage).where(GeneratedImage.id == image_id,
                                                              GeneratedImage.account_id == account_id))
            if row is None or row.expires_at <= now:
                return None
            return self.sealer.unseal(account_id, row.body)

    def sweep(self, now: float) -> int:
        """Delete every image whose time is up, a batch at a time; how many went."""
        removed = 0
        while True:
            with self._sessions.begin() as session:
                ids = list(session.scalars(select(GeneratedImage.id).where(GeneratedImage.expires_at <= now)
                                           .limit(SWEEP_BATCH)))
                if not ids:
                    return removed
                session.execute(delete(GeneratedImage).where(GeneratedImage.id.in_(ids)))
            removed += len(ids)

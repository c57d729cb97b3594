"""Who a request is, as the web layer keeps it: no password hash, no session."""

from __future__ import annotations

from dataclasses import dataclass

from assistant.db import Role


@dataclass(frozen=True)
class Account:
    """What the web layer keeps of a user: no hash, no session."""

    id: int
    username: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def may_upload(self) -> bool:
        """STOW-RS: uploaders and admins."""
        return self.role in (Role.UPLOADER, Role.ADMIN)

"""Who is calling: a service (bearer token) or an operator (staff session), and the actor of a write."""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from core.models import Service, ServiceToken


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of the API. DRF sees it as request.user."""

    service: "Service | None" = None
    user: "User | None" = None
    token: "ServiceToken | None" = field(default=None, repr=False)

    is_authenticated = True
    is_anonymous = False

    @property
    def is_operator(self) -> bool:
        return self.user is not None and self.user.is_active and self.user.is_staff

    @property
    def label(self) -> str:
        if self.service is not None:
            return f"service:{self.service.name}"
        return f"operator:{self.user.get_username()}"

    @property
    def pk(self):  # DRF's throttles and logging look for a pk.
        return self.label


@dataclass(frozen=True)
class Actor:
    """Who makes a write and under which request id; recorded with every version of history."""

    label: str
    request_id: str = ""
    user_id: int | None = None

    @classmethod
    def for_principal(cls, principal: Principal, request_id: str = "") -> "Actor":
        return cls(
            label=principal.label,
            request_id=request_id,
            user_id=principal.user.pk if principal.user else None,
        )

    @classmethod
    def for_user(cls, user, request_id: str = "") -> "Actor":
        return cls(label=f"operator:{user.get_username()}", request_id=request_id, user_id=user.pk)

    @classmethod
    def system(cls, command: str) -> "Actor":
        return cls(label=f"command:{command}")

"""Who may use the dashboard's controls: one user and an Argon2 password hash in settings.

``solodesk dashboard password`` prints the hash to put in ``[dashboard] password_hash``; the
password itself is never stored. Without a hash the dashboard is read-only.
"""

from __future__ import annotations

import hmac

from core.errors import UsageError
from core.settings import Settings

#: The fewest characters a dashboard password may have.
MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    """Return the Argon2id hash of ``password`` (a new random salt each call).

    Raises
    ------
    UsageError
        If the password is shorter than :data:`MIN_PASSWORD` characters.
    """
    from argon2 import PasswordHasher

    if len(password) < MIN_PASSWORD:
        raise UsageError(f"a dashboard password needs at least {MIN_PASSWORD} characters")
    return PasswordHasher().hash(password)


def controls_enabled(settings: Settings) -> bool:
    """Return whether a password hash is set, so that someone can log in to use controls."""
    return settings.dashboard.password_hash is not None


def check_login(settings: Settings, user: str, password: str) -> bool:
    """Return whether ``user`` and ``password`` unlock the controls.

    Always False without a password hash in settings. A malformed hash is a settings error.

    Raises
    ------
    UsageError
        If ``[dashboard] password_hash`` is not an Argon2 hash.
    """
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    stored = settings.dashboard.password_hash
    if stored is None:
        return False
    right_user = hmac.compare_digest(user.encode(), settings.dashboard.user.encode())
    right_password = False
    try:
        right_password = PasswordHasher().verify(stored.get_secret_value(), password)
    except VerificationError:
        pass
    except InvalidHashError:
        msg = "[dashboard] password_hash is not an Argon2 hash: make one with solodesk dashboard password"
        raise UsageError(msg) from None
    return right_user and right_password

"""Who may open a call on which carrier route: the per-carrier authentication decision.

Sans-IO: the request's path and headers in, nothing or a
:class:`~actors.errors.CarrierAuthError` (its ``http_status`` is the refusal) out. The
supervisor asks before the upgrade, after routing.

Each carrier is checked only with its own credentials: a Twilio signature never admits an
``/asterisk/`` upgrade and Basic/bearer credentials never admit a ``/twilio/`` one. A carrier
with no credentials configured is open only while no carrier has any (a development daemon
on loopback, or one started with ``--insecure``); as soon as one carrier has credentials,
the others without are refused with 401 naming the variable to set. That keeps a daemon
on loopback behind a public proxy closed too, where the start-up check (which only looks
at the listen address, :mod:`sessions.startup_checks`) cannot see the exposure.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from actors.errors import CarrierUnauthorized
from sessions.config import AdmissionSettings
from sessions.dialects.asterisk import check_upgrade_auth
from sessions.dialects.twilio_signature import validate_twilio_upgrade

TWILIO_VARIABLES = "TWILIO_AUTH_TOKEN and TWILIO_PUBLIC_URL"
ASTERISK_VARIABLES = "ASTERISK_BASIC_AUTH (or ASTERISK_BEARER_TOKEN behind a proxy)"
CARRIER_VARIABLES = {"twilio": TWILIO_VARIABLES, "asterisk": ASTERISK_VARIABLES}
"""What a carrier needs configured to be authenticated (named in refusals and start-up)."""

Headers = Iterable[tuple[bytes | str, bytes | str]]


@attrs.frozen(kw_only=True)
class CarrierAuth:
    """The enabled carriers and their credentials (from ``AdmissionSettings``)."""

    carriers: tuple[str, ...] = ("twilio", "asterisk")
    twilio_auth_tokens: tuple[str, ...] = attrs.field(default=(), repr=False)
    twilio_public_url: str | None = None
    asterisk_basic_auth: tuple[str, str] | None = attrs.field(default=None, repr=False)
    asterisk_bearer_token: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def from_admission(cls, adm: AdmissionSettings) -> CarrierAuth:
        """The policy ``CARRIERS`` and the carriers' credential variables describe."""
        return cls(
            carriers=adm.carriers,
            twilio_auth_tokens=adm.twilio_auth_tokens,
            twilio_public_url=adm.twilio_public_url,
            asterisk_basic_auth=adm.asterisk_basic_auth,
            asterisk_bearer_token=adm.asterisk_bearer_token,
        )

    @property
    def twilio_signatures(self) -> bool:
        """Whether Twilio upgrades are signature-checked."""
        return bool(self.twilio_auth_tokens) and self.twilio_public_url is not None

    @property
    def asterisk_credentials(self) -> bool:
        """Whether Asterisk upgrades must carry Basic or bearer credentials."""
        return self.asterisk_basic_auth is not None or self.asterisk_bearer_token is not None

    @property
    def any_credentials(self) -> bool:
        """Whether some carrier has credentials configured (then none is left open)."""
        return bool(self.twilio_auth_tokens) or self.asterisk_credentials

    def enabled(self, carrier: str) -> bool:
        """Whether ``carrier`` is in ``CARRIERS`` (else its route answers 404)."""
        return carrier in self.carriers

    def check(self, carrier: str, path: str, headers: Headers) -> None:
        """Raise :class:`~actors.errors.CarrierAuthError` unless this upgrade may proceed."""
        if carrier == "twilio":
            if self.twilio_signatures:
                validate_twilio_upgrade(
                    auth_tokens=self.twilio_auth_tokens,
                    public_url=self.twilio_public_url or "",
                    path=path,
                    headers=headers,
                )
                return
        elif carrier == "asterisk":
            if self.asterisk_credentials:
                check_upgrade_auth(
                    headers,
                    basic=self.asterisk_basic_auth,
                    bearer_token=self.asterisk_bearer_token,
                )
                return
        else:  # pragma: no cover - routing knows only the two carriers
            raise CarrierUnauthorized(f"unknown carrier {carrier[:16]!r}")
        if self.any_credentials:
            raise CarrierUnauthorized(
                f"no credentials configured for carrier {carrier}: set "
                f"{CARRIER_VARIABLES[carrier]}, or remove {carrier} from CARRIERS"
            )

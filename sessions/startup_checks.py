"""Start-up checks: configurations the daemon refuses to run with, each as one line.

:func:`startup_problems` returns every problem found (empty: start). ``novavoice serve``
(:func:`sessions.serve.check_listen_security`) turns a non-empty list into one
:class:`~actors.errors.ConfigError` before binding anything; the ``--workers`` parent checks
once for all its workers. Add new checks here, beside these, so an operator sees every
problem at once.

Always refused (``--insecure`` does not waive them, because every real call would fail):

- ``TWILIO_AUTH_TOKEN`` without ``TWILIO_PUBLIC_URL``, and the URL without a token;
- a ``TWILIO_PUBLIC_URL`` that is not ``wss://host[:port][/prefix]`` (Twilio connects Media
  Streams over ``wss`` only and signs exactly that URL).

Refused beyond loopback (a listen host other than 127.0.0.0/8, ::1 or ``localhost``) unless
``--insecure``: an enabled carrier (``CARRIERS``) with no credentials, naming the carrier and
its variables (:data:`sessions.carrier_auth.CARRIER_VARIABLES`).
"""

from __future__ import annotations

import ipaddress

from sessions.carrier_auth import CARRIER_VARIABLES, CarrierAuth
from sessions.config import Settings
from sessions.config_values import public_url_problem


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a listen address) is reachable only from this machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def startup_problems(settings: Settings, *, insecure: bool = False) -> list[str]:
    """Every reason the daemon must not start with ``settings``; empty when it may."""
    adm = settings.admission
    host = settings.listen.address[0]
    problems: list[str] = []
    if adm.twilio_auth_tokens and adm.twilio_public_url is None:
        problems.append(
            "TWILIO_AUTH_TOKEN is set but TWILIO_PUBLIC_URL is not: set it to the wss:// URL "
            "your TwiML <Stream> uses (the URL Twilio signs), or every Twilio call gets 403"
        )
    if adm.twilio_public_url is not None and not adm.twilio_auth_tokens:
        problems.append(
            "TWILIO_PUBLIC_URL is set but TWILIO_AUTH_TOKEN is not: set the account's auth "
            "token(s), comma-separated, to check X-Twilio-Signature"
        )
    if adm.twilio_public_url is not None:
        why = public_url_problem(adm.twilio_public_url)
        if why is not None:
            problems.append(f"TWILIO_PUBLIC_URL {why}")
    if not insecure and not is_loopback(host):
        auth = CarrierAuth.from_admission(adm)
        configured = {"twilio": auth.twilio_signatures, "asterisk": auth.asterisk_credentials}
        for carrier in adm.carriers:
            if not configured.get(carrier, False):
                problems.append(
                    f"NOVAVOICE_LISTEN={host}: carrier {carrier} has no authentication beyond "
                    f"loopback: set {CARRIER_VARIABLES[carrier]}, remove {carrier} from "
                    "CARRIERS, or pass --insecure"
                )
    return problems

"""The Alexa request envelope (what we read of it) and the response format.

Decoding is tolerant: Alexa adds fields over time, and unknown ones are ignored. Only what the
skill uses is declared. Reference: "Request and Response JSON Reference" of the Alexa Skills Kit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec


class Application(msgspec.Struct, frozen=True, rename="camel"):
    application_id: str = ""


class User(msgspec.Struct, frozen=True, rename="camel"):
    user_id: str = ""
    #: With account linking: the token our sign-in issued (an omniretail customer session token).
    access_token: str | None = None


class Session(msgspec.Struct, frozen=True, rename="camel"):
    new: bool = False
    session_id: str = ""
    application: Application | None = None
    attributes: dict[str, Any] | None = None
    user: User | None = None


class System(msgspec.Struct, frozen=True, rename="camel"):
    application: Application | None = None
    user: User | None = None


class Context(msgspec.Struct, frozen=True):
    system: System | None = msgspec.field(default=None, name="System")


class ResolvedValue(msgspec.Struct, frozen=True):
    id: str = ""
    name: str = ""


class ResolutionValue(msgspec.Struct, frozen=True):
    value: ResolvedValue | None = None


class ResolutionStatus(msgspec.Struct, frozen=True):
    code: str = ""


class Authority(msgspec.Struct, frozen=True):
    authority: str = ""
    status: ResolutionStatus | None = None
    values: list[ResolutionValue] = msgspec.field(default_factory=list)


class Resolutions(msgspec.Struct, frozen=True, rename="camel"):
    resolutions_per_authority: list[Authority] = msgspec.field(default_factory=list)


class Slot(msgspec.Struct, frozen=True, rename="camel"):
    name: str = ""
    value: str | None = None
    confirmation_status: str = "NONE"
    resolutions: Resolutions | None = None

    def resolved_id(self) -> str | None:
        """The id entity resolution matched (our SKU), if any authority matched."""
        if self.resolutions is None:
            return None
        for authority in self.resolutions.resolutions_per_authority:
            if authority.status is not None and authority.status.code != "ER_SUCCESS_MATCH":
                continue
            for item in authority.values:
                if item.value is not None and item.value.id:
                    return item.value.id
        return None


class Intent(msgspec.Struct, frozen=True, rename="camel"):
    name: str = ""
    confirmation_status: str = "NONE"
    slots: dict[str, Slot] | None = None

    def slot(self, name: str) -> Slot | None:
        return (self.slots or {}).get(name)

    def value(self, name: str) -> str | None:
        slot = self.slot(name)
        if slot is None or slot.value is None or not slot.value.strip() or slot.value.strip() == "?":
            return None
        return slot.value.strip()


class Request(msgspec.Struct, frozen=True, rename="camel"):
    type: str
    request_id: str = ""
    timestamp: str = ""
    locale: str = ""
    dialog_state: str | None = None
    intent: Intent | None = None
    reason: str | None = None


class Envelope(msgspec.Struct, frozen=True):
    request: Request
    version: str = "1.0"
    session: Session | None = None
    context: Context | None = None

    @property
    def application_ids(self) -> list[str]:
        """Every application id the envelope states (session and context)."""
        found = []
        if self.session is not None and self.session.application is not None:
            found.append(self.session.application.application_id)
        system = self.context.system if self.context is not None else None
        if system is not None and system.application is not None:
            found.append(system.application.application_id)
        return found

    @property
    def user(self) -> User | None:
        system = self.context.system if self.context is not None else None
        if system is not None and system.user is not None:
            return system.user
        return self.session.user if self.session is not None else None

    @property
    def attributes(self) -> dict[str, Any]:
        if self.session is None or not isinstance(self.session.attributes, dict):
            return {}
        return dict(self.session.attributes)


_decoder = msgspec.json.Decoder(Envelope)


def decode(body: bytes) -> Envelope:
    """The envelope; raises ``msgspec.DecodeError`` / ``ValidationError`` on a bad body."""
    return _decoder.decode(body)


def parse_timestamp(value: str) -> datetime | None:
    """An ISO 8601 request timestamp as an aware UTC datetime, or None if it is not one."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def ssml_speech(ssml: str) -> dict[str, str]:
    return {"type": "SSML", "ssml": ssml}


def response(
    ssml: str | None,
    *,
    end: bool,
    attributes: dict[str, Any] | None = None,
    reprompt: str | None = None,
    card: dict[str, Any] | None = None,
    directives: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """An Alexa response document. ``ssml`` and ``reprompt`` are complete ``<speak>`` documents."""
    body: dict[str, Any] = {"shouldEndSession": end}
    if ssml is not None:
        body["outputSpeech"] = ssml_speech(ssml)
    if reprompt is not None and not end:
        body["reprompt"] = {"outputSpeech": ssml_speech(reprompt)}
    if card is not None:
        body["card"] = card
    if directives:
        body["directives"] = directives
    return {"version": "1.0", "sessionAttributes": attributes or {}, "response": body}


def simple_card(title: str, content: str) -> dict[str, str]:
    return {"type": "Simple", "title": title, "content": content}


LINK_ACCOUNT_CARD: dict[str, str] = {"type": "LinkAccount"}


def empty_response() -> dict[str, Any]:
    """The answer to a ``SessionEndedRequest``: Alexa does not speak it."""
    return {"version": "1.0", "response": {}}

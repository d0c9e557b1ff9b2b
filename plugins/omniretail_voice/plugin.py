"""Voice assistant channel plugin: an Alexa custom skill hosted by the gateway.

* ``render_listing``: the product's ``PRODUCT`` slot values (one per SKU, ``id`` = SKU).
* ``GET /channels/voice/interaction-model.json`` (voice or admin key): the skill's interaction
  model, its slot values built live from the catalog (``?source=published``: from the published
  listings instead).
* ``POST /channels/voice/alexa`` (public; Alexa signs it): the skill endpoint. Every request is
  verified (certificate chain, ``Signature-256`` over the raw body, 150 s timestamp, skill id)
  before anything else happens.

Loaded through the ``omniretail`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import Request, Response, get, post
from litestar.params import QueryParameter

from omniretail import hookimpl
from omniretail.channel import Capability, ChannelContext, ChannelSpec, RegisterChannel
from omniretail.config import ConfigError
from omniretail.domain.catalog import Product
from omniretail.gateway.keys import KeyStore
from omniretail.gateway.problems import ApiError
from omniretail_voice import envelope, model
from omniretail_voice.conversation import Turn
from omniretail_voice.settings import Settings
from omniretail_voice.skill import VoiceSkill

if TYPE_CHECKING:
    from omniretail.kernel import Kernel

__all__ = ["Settings", "kernel_started", "register_channels", "register_routes", "render_listing"]

log = logging.getLogger("omniretail.voice")

CHANNEL = "voice"


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    register(
        ChannelSpec(
            name=CHANNEL,
            title="Voice assistant",
            description="Alexa custom skill: interaction model from the catalog, SSML responses, signed requests",
            settings=Settings,
            capabilities=frozenset(
                {Capability.BROWSE, Capability.CART, Capability.CHECKOUT, Capability.PICKUP, Capability.TRACK}
            ),
            formats=(
                "Alexa interaction model JSON (PRODUCT slot values, id = SKU)",
                "Alexa request and response envelopes (SSML)",
            ),
        )
    )


@hookimpl
def render_listing(channel: ChannelContext, product: Product, stock: Mapping[str, int]) -> Any:
    # Slot values do not depend on stock: a stock change publishes nothing new.
    return model.slot_values(product)


@hookimpl
def kernel_started(kernel: Kernel) -> None:
    ctx = kernel.channels.get(CHANNEL)
    if ctx is None or not isinstance(ctx.settings, Settings):
        return
    settings: Settings = ctx.settings
    if settings.pickup_location is not None:
        loc = next((x for x in kernel.config.locations if x.id == settings.pickup_location), None)
        if loc is None or not loc.pickup:
            raise ConfigError(
                "channels.voice.pickup_location",
                f"{settings.pickup_location!r} is not a [[locations]] id with pickup = true",
            )
    if not settings.verify_signatures:
        log.warning(
            "!!! channels.voice.verify_signatures = false: Alexa request signatures and timestamps are "
            "NOT checked, so ANYONE can place orders as any linked customer through "
            "/channels/voice/alexa. Use this for local development only, never in production. !!!"
        )


async def _slot_values(kernel: Kernel, source: str) -> list[model.SlotValue]:
    if source == "published":
        from omniretail.storage.publications import PublicationStore

        values: list[model.SlotValue] = []
        async for content in PublicationStore(kernel.db).listings(CHANNEL):
            values.extend(msgspec.json.decode(content))
        return values
    snapshot = await kernel.catalog.snapshot()
    return [value for product in snapshot.products for value in model.slot_values(product)]


#: Alexa's signature headers (``verification.CERT_HEADER``, ``SIGNATURE_HEADER``). The
#: verification module (and the ``cryptography`` package, ~8 MB) is imported at the first request.
_SIGNATURE_HEADERS = ("SignatureCertChainUrl", "Signature-256")


def _headers(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {name: request.headers[name] for name in _SIGNATURE_HEADERS if name in request.headers}


@hookimpl
def register_routes(register: Any, channel: ChannelContext) -> None:
    kernel = channel.kernel
    settings: Settings = channel.settings
    skill = VoiceSkill(channel, settings)
    if settings.verify_signatures and settings.skill_id is None:
        log.warning(
            "channels.voice.skill_id is not set: requests Alexa signed for ANY skill are accepted on "
            "/channels/%s/alexa; set it to your skill's id (amzn1.ask.skill...)",
            channel.name,
        )
    verifiers: list[Any] = []  # the one Verifier, made at the first request (it caches cert chains)
    own_keys = KeyStore(kernel.db)  # used only if the app does not share its own

    @get(
        "/interaction-model.json",
        operation_id="voiceInteractionModel",
        summary="The Alexa interaction model: intents, dialog and PRODUCT slot values (id = SKU) from the catalog",
    )
    async def interaction_model(
        source: Annotated[
            Literal["catalog", "published"],
            QueryParameter(description="catalog: live from the catalog (default); published: the published listings"),
        ] = "catalog",
    ) -> dict[str, Any]:
        return model.interaction_model(settings.invocation_name, await _slot_values(kernel, source))

    @post(
        "/alexa",
        opt={"public": True},
        operation_id="voiceAlexaEndpoint",
        status_code=200,
        summary="The Alexa skill endpoint: signed Alexa request envelopes in, SSML responses out",
    )
    async def alexa(request: Request[Any, Any, Any]) -> Response[bytes]:
        from omniretail_voice import verification

        if not verifiers:
            verifiers.append(verification.Verifier(clock=kernel.clock))
        verifier = verifiers[0]
        body = await request.body()
        try:
            if settings.verify_signatures:
                await verifier.verify(_headers(request), body)
            try:
                parsed = envelope.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise ApiError(400, "alexa-request", f"not an Alexa request envelope: {exc}") from None
            if settings.verify_signatures:
                verifier.check_timestamp(envelope.parse_timestamp(parsed.request.timestamp))
            if settings.skill_id is not None:
                ids = parsed.application_ids
                if not ids or any(x != settings.skill_id for x in ids):
                    raise verification.VerificationFailed("alexa-skill", "the request is for another skill")
        except verification.VerificationFailed as exc:
            log.info("refused an Alexa request: %s", exc.detail)
            raise ApiError(400, exc.code, exc.detail) from None
        keys: KeyStore = getattr(request.app.state, "key_store", None) or own_keys
        customer, token_sent = await skill.identify(parsed, keys.session_customer)
        answer = await skill.handle(Turn(parsed, customer, token_sent))
        return Response(msgspec.json.encode(answer), media_type="application/json;charset=UTF-8")

    register(interaction_model)
    register(alexa)

"""Meta and TikTok catalog CSV from the published listings.

RFC 4180 CSV written by the csv module (``QUOTE_MINIMAL``: fields holding a comma, a quote or a
line break are quoted, ``"`` doubled), a header row of attribute names, UTF-8. Both are full
snapshots, streamed in chunks so a catalog of any size is served in bounded memory.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable

import msgspec

from omniretail_social.listing import META_FIELDS, TIKTOK_FIELDS, SocialListing

_listings = msgspec.json.Decoder(list[SocialListing])


def _csv(
    fields: tuple[str, ...], pick: Callable[[SocialListing], msgspec.Struct]
) -> Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]:
    async def feed(listings: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(fields)
        yield buffer.getvalue().encode()
        async for content in listings:
            buffer.seek(0)
            buffer.truncate()
            for listing in _listings.decode(content):
                item = pick(listing)
                writer.writerow(["" if (v := getattr(item, name)) is None else str(v) for name in fields])
            yield buffer.getvalue().encode()

    return feed


#: The Meta catalog CSV (``id`` first, availability with spaces, ``"9.99 USD"`` prices).
meta_csv = _csv(META_FIELDS, lambda listing: listing.meta)
#: The TikTok catalog CSV (``sku_id`` first, then TikTok's other required fields).
tiktok_csv = _csv(TIKTOK_FIELDS, lambda listing: listing.tiktok)

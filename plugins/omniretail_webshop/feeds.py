"""Google Merchant feeds from the published listings: RSS 2.0 with the ``g:`` namespace, and TSV.

Both are full snapshots (an omitted item is deleted by Google), streamed in chunks so a catalog of
any size is served in bounded memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from xml.sax.saxutils import escape

import msgspec

from omniretail_webshop.listing import FIELDS, GoogleItem

G_NS = "http://base.google.com/ns/1.0"
_items = msgspec.json.Decoder(list[GoogleItem])


async def rss(listings: AsyncIterator[bytes], *, title: str, link: str) -> AsyncIterator[bytes]:
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<rss version="2.0" xmlns:g="{G_NS}">\n<channel>\n'
        f"<title>{escape(title)}</title>\n<link>{escape(link)}</link>\n"
        f"<description>{escape(title)} product feed</description>\n"
    ).encode()
    async for content in listings:
        parts = []
        for item in _items.decode(content):
            parts.append("<item>")
            for name in FIELDS:
                value = getattr(item, name)
                if value is not None:
                    parts.append(f"<g:{name}>{escape(str(value))}</g:{name}>")
            parts.append("</item>\n")
        yield "".join(parts).encode()
    yield b"</channel>\n</rss>\n"


def _cell(value: object) -> str:
    return "" if value is None else str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


async def tsv(listings: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield ("\t".join(FIELDS) + "\n").encode()
    async for content in listings:
        rows = ["\t".join(_cell(getattr(item, name)) for name in FIELDS) for item in _items.decode(content)]
        yield ("\n".join(rows) + "\n").encode()

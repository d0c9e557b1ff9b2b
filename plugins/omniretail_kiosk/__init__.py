"""In-store kiosk channel for omniretail.

Store-scoped availability, Google local inventory feed, click and collect, endless aisle, QR handoff.
See ``docs/channels/kiosk.md``.
"""

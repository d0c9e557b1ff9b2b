"""In-store kiosk channel for omniretail.

Store-scoped availability, google local inventory feed, click and collect, endless aisle, qr handoff.
"""

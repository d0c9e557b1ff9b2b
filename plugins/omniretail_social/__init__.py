"""Social commerce channel for omniretail.

Meta and TikTok catalog CSV, shoppable links with UTM attribution, signed Meta webhooks that
turn "buy 2 latte" comments and messages into carts. See docs/channels/social.md.
"""

"""Social commerce channel for omniretail.

Meta and tiktok catalog csv, shoppable links with attribution, signed webhooks.
"""

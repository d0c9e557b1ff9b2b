"""Marketplace channel for omniretail.

Amazon json_listings_feed export, signed order webhooks, order polling, shipment confirmation.
"""

"""Use cases: catalog, inventory, pricing, carts, checkout, orders, customers.

Services depend on the ports in ``omniretail.services.protocols`` and on the domain; never on
SQLAlchemy, Litestar or a channel plugin.
"""

"""The Litestar gateway: one unified API for storefronts and back offices."""

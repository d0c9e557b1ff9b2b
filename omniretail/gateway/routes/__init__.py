"""Route handlers of the gateway, one module per resource."""

"""HTTP routers of the read API, one module per resource."""

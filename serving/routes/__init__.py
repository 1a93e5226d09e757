"""HTTP routes, one module per concern; each handler calls one function."""

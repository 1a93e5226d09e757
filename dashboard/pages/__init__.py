"""The dashboard's pages: each has `layout(...)` and, when it has callbacks, `register(...)`."""

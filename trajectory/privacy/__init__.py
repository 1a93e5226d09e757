"""Privacy by design: pseudonymised identifiers, retention and erasure (docs/privacy.md)."""

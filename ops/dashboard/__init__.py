"""The staff dashboard: one admin page with the health, integrity, flags, connections and security
events support staff check first (docs/operations.md "Admin console for support staff")."""

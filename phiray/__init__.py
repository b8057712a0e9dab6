"""phiray."""

"""Health checks: keepalived's checkers run in-band through the switch."""

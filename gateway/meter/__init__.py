"""The southbound side: the eGauge WebAPI client (the only httpx user)."""

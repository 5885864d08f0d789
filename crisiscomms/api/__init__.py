"""HTTP intake: small FastAPI apps on the engine (the engine never imports them)."""

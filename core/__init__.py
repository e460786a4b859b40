"""The explanation engine (to be filled by the engine issue)."""

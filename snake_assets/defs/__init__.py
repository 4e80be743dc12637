"""Dagster definitions of snake_assets, auto-loaded by ``snake_assets.definitions``."""

"""snake_assets: a Dagster asset platform for SnakeCLEF species identification."""

__version__ = "0.1.0"

"""Pure-Python logic of snake_assets. Nothing under this package imports dagster."""

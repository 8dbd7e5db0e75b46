"""Recipes: YAML files that describe a whole pipeline, validated by a pydantic schema."""

"""StyleAtlas index layer."""

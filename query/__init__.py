"""StyleAtlas query layer."""

"""StyleAtlas pipeline layer."""

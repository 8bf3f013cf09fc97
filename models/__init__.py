from models.errors import AtlasError, CheckpointError, PromptError, AtlasFormatError  # noqa: F401

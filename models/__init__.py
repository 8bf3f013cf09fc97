from models.errors import AtlasError, AtlasFormatError, CheckpointError, PromptError  # noqa: F401

"""StyleAtlas errors: one sentence for a person, what is wrong and what to do."""


class AtlasError(Exception):
    """Base class of every error StyleAtlas raises on purpose; the CLIs print it without a traceback."""


class CheckpointError(AtlasError):
    """A model file is missing, corrupt, of another kind, or has inconsistent shapes."""


class PromptError(AtlasError):
    """A prompt is empty, not text, or otherwise unusable."""


class NoDirectionError(PromptError):
    """The target and the neutral have the same embedding, so Δt = normalise(t(target) - t(neutral)) is undefined."""


class AtlasFormatError(AtlasError):
    """An atlas directory is missing, incomplete, or does not match the models it is opened with."""

"""Package data for models: the 79 ImageNet prompt templates (SPEC §4)."""

"""One exception type per failure family. The CLI turns each into exit status 2 and one readable line."""


class GenirError(Exception):
    """Base class of the errors a user can cause (bad file, bad config); never raised for internal bugs."""


class DatasetError(GenirError):
    """A dataset file is missing, malformed, or empty after filtering. The message names the file."""


class FeatureError(GenirError):
    """A feature matrix has the wrong shape, non-finite values or cannot be built."""


class ConfigError(GenirError):
    """A configuration field is unknown or has a value of the wrong type or range."""


class CheckpointError(GenirError):
    """A run directory or checkpoint is missing or does not match what is asked of it."""


class SemanticIdError(GenirError):
    """Identifier codes or files are invalid: duplicate IDs where uniqueness is required, codes outside their
    level's range, a malformed or mismatching ``ids.npy`` / ``table.json`` / saved scheme. Names the file."""


class IndexFormatError(GenirError):
    """A semantic-ID catalogue, prefix index or index dir is malformed: wrong shape, a code outside its level's
    codebook, duplicate IDs, a missing, edited or inconsistent file. Names the file or field and what was expected."""

"""One error tree for everything Shipyard raises on purpose.

Every message says what was wrong, where (column, field, file) and what was expected, so the
CLI can print it as one line and the KFP UI shows it as the step's failure reason.
"""


class ShipyardError(Exception):
    """Root of all errors Shipyard raises on purpose (user or data errors, not bugs)."""


class ConfigError(ShipyardError, ValueError):
    """A configuration or parameter is unknown, missing or has a value of the wrong kind."""


class DataValidationError(ShipyardError, ValueError):
    """Data does not meet the contract: a column, dtype, range or file is not as expected."""


class TrainingDivergedError(DataValidationError):
    """Training stopped because its loss became NaN or infinite (the last good checkpoint is kept)."""


class TrainingError(ShipyardError, RuntimeError):
    """Training could not finish for a reason other than the data (a training process died)."""


class SchemaMismatchError(DataValidationError):
    """Two models that are to be compared take different input schemas (features or their kinds)."""


class ArtifactError(ShipyardError, ValueError):
    """A directory is not a valid Shipyard artifact (missing or malformed manifest)."""


class IntegrityError(ArtifactError):
    """An artifact's files do not match the sha256 digests recorded in its manifest."""


class UnsafeArtifactError(ArtifactError):
    """An artifact would need unsafe deserialization (plain pickle, untrusted types)."""


class StorageError(ShipyardError, OSError):
    """A path or URI cannot be read or written."""


class UnsupportedSchemeError(StorageError):
    """A URI has a scheme (``s3://``, ``https://``, ...) that Shipyard cannot read or write."""


class NotBlessedError(ShipyardError):
    """A model did not pass its evaluation checks (or has no evaluation) and may not be deployed."""


class DeploymentError(ShipyardError, RuntimeError):
    """A model could not be deployed or did not answer its smoke test."""


class RolloutAbortedError(ShipyardError):
    """A canary rollout failed its metric checks and was rolled back."""


class KFPHostError(ShipyardError):
    """The KFP API at ``--host`` cannot be reached, or refused the run."""


class RegistryError(ShipyardError, LookupError):
    """The model registry has no registered model, version or alias of that name, or cannot make
    the move asked for (a rollback with no ``previous``); the message names what exists."""

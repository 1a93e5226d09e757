"""The one exception tree of the project.

    TrajectoryError                 base: every error the project raises on purpose
    ├── ConfigError                 a setting is missing or invalid
    ├── DataError                   input data cannot be used
    │   ├── InputFileError          a file is unreadable, empty or of an unknown format
    │   └── NoWindowsError          no complete observation/prediction window could be built
    ├── ModelError                  a model name, checkpoint or input shape is wrong
    ├── TrackingError               MLflow could not be reached or answered unexpectedly
    └── DownloadError               a dataset download failed or its checksum did not match

The CLI maps each class to an exit code in `EXIT_CODES`; the HTTP service maps them to status
codes in one place too.
"""


class TrajectoryError(Exception):
    """Base class for every error the project raises on purpose."""


class ConfigError(TrajectoryError):
    """A setting is missing or invalid."""


class DataError(TrajectoryError):
    """Input data cannot be used."""


class InputFileError(DataError):
    """A file is unreadable, empty or of an unknown format."""


class NoWindowsError(DataError):
    """No complete observation/prediction window could be built from the data."""


class ModelError(TrajectoryError):
    """A model name, checkpoint or input shape is wrong."""


class TrackingError(TrajectoryError):
    """MLflow could not be reached or answered unexpectedly."""


class DownloadError(TrajectoryError):
    """A dataset download failed or its checksum did not match."""


EXIT_CODES: dict[type[TrajectoryError], int] = {
    ConfigError: 2,
    InputFileError: 3,
    NoWindowsError: 3,
    DataError: 3,
    ModelError: 4,
    TrackingError: 5,
    DownloadError: 6,
    TrajectoryError: 1,
}


def exit_code(err: TrajectoryError) -> int:
    """The CLI exit code for an error: the entry of its nearest class in `EXIT_CODES`."""
    for cls in type(err).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1

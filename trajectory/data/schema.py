"""Column names and dtypes shared by every stage, so they are spelled once."""

from __future__ import annotations

import numpy as np

SCENE, FRAME, AGENT, X, Y = "scene", "frame", "agent_id", "x", "y"
TRACK_COLUMNS = [SCENE, FRAME, AGENT, X, Y]
# optional float64 track column: seconds, for rows read from timestamps (their frame is then
# the timestamp in milliseconds); rows without it are timed by their frame (see `resample`)
TIME = "time"
TRACK_DTYPES: dict[str, type | str] = {
    SCENE: "string",
    FRAME: np.int64,
    AGENT: np.int64,
    X: np.float64,
    Y: np.float64,
}

# window records (one row per agent and window start), as written to Parquet
SPLIT = "split"
START_FRAME = "start_frame"
OBS, FUT, NBR = "obs", "fut", "nbr"
FEATURE_COLUMNS = [
    "speed",
    "acceleration",
    "heading_change",
    "curvature",
    "neighbour_count",
    "nearest_neighbour_distance",
]

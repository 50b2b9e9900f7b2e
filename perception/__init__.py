"""Perception: measurements (`Detections`) and multi-object tracking (`Tracker` → `Tracks`).

No safety policy lives here; the safety layer consumes these types.
"""

from perception.detections import Detections
from perception.errors import DetectorError, InvalidDetectionsError, PerceptionError, TrackerError
from perception.tracker import Tracker
from perception.tracks import Tracks, TrackStatus

__all__ = [
    "Detections",
    "DetectorError",
    "InvalidDetectionsError",
    "PerceptionError",
    "TrackStatus",
    "Tracker",
    "TrackerError",
    "Tracks",
]

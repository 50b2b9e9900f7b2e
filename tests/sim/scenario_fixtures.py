"""A small scenario the CLI and report tests share: the radar drops out, the camera covers."""

from __future__ import annotations

from typing import Any

RADAR_DROPOUT: dict[str, Any] = {
    "name": "radar dropout",
    "description": "the radar stops at 1.5 s; the camera still covers the lead vehicle",
    "duration_s": 4.0,
    "seed": 3,
    "world": {
        "ego": {"speed": 10.0},
        "actors": [
            {"id": 1, "kind": "vehicle", "position": [30.0, 0.0],
             "motion": {"pattern": "constant_velocity", "velocity": [10.0, 0.0]}},
        ],
    },
    "sensors": [
        {"kind": "camera", "channel": "camera"},
        {"kind": "radar", "channel": "radar", "clutter_rate": 0.2},
    ],
    "supervisor": {"channels": [
        {"name": "camera", "kind": "camera", "role": "primary"},
        {"name": "radar", "kind": "radar", "role": "redundant"},
    ]},
    "faults": [{"kind": "dropout", "channel": "radar", "start": {"at": 1.5}}],
    "expectations": [
        {"kind": "max_silent_failure_s"},
        {"kind": "fault_detected", "fault": 0, "within_s": 1.5},
    ],
}

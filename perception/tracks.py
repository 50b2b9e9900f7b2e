"""`Tracks`: a tracker's output at one instant, as a structure of arrays (one row per track)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class TrackStatus(IntEnum):
    """Lifecycle: tentative → confirmed (n hits in m frames) → coasting (missed) → deleted."""

    TENTATIVE = 0
    CONFIRMED = 1
    COASTING = 2
    DELETED = 3


@dataclass(frozen=True, eq=False)
class Tracks:
    """All live tracks of one tracker after a step.

    ``x`` (N, dx) states and ``P`` (N, dx, dx) covariances in the model's state space;
    ``position`` (N, 2) / ``position_cov`` (N, 2, 2) are the model's position part (metres on the
    ground plane, or pixel box centre for the box model) so consumers need not know the model.
    ``nis`` is the normalised innovation squared of this step's update (NaN where not updated);
    ``innovation`` (N, dz) / ``innovation_cov`` (N, dz, dz) likewise (NaN where not updated).
    """

    t: float
    sensor: str
    ids: IntArray
    status: IntArray
    x: FloatArray
    P: FloatArray
    position: FloatArray
    position_cov: FloatArray
    age: IntArray  # steps since creation
    hits: IntArray  # total updates
    time_since_update: FloatArray  # seconds since last update (0 if updated this step)
    cov_trace: FloatArray  # trace of the position covariance
    updated: NDArray[np.bool_]  # updated in this step
    nis: FloatArray
    innovation: FloatArray
    innovation_cov: FloatArray
    scores: FloatArray  # score of the last associated detection
    labels: IntArray
    det_index: IntArray  # index of the detection that updated it this step, -1 otherwise
    space: str = "point"

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def confirmed(self) -> NDArray[np.bool_]:
        """Mask of tracks that are confirmed or coasting after confirmation (reportable)."""
        s = self.status
        return (s == int(TrackStatus.CONFIRMED)) | (s == int(TrackStatus.COASTING))

    def subset(self, index: NDArray[np.bool_] | NDArray[np.int64]) -> Tracks:
        idx = np.asarray(index)
        return Tracks(
            t=self.t,
            sensor=self.sensor,
            ids=self.ids[idx],
            status=self.status[idx],
            x=self.x[idx],
            P=self.P[idx],
            position=self.position[idx],
            position_cov=self.position_cov[idx],
            age=self.age[idx],
            hits=self.hits[idx],
            time_since_update=self.time_since_update[idx],
            cov_trace=self.cov_trace[idx],
            updated=self.updated[idx],
            nis=self.nis[idx],
            innovation=self.innovation[idx],
            innovation_cov=self.innovation_cov[idx],
            scores=self.scores[idx],
            labels=self.labels[idx],
            det_index=self.det_index[idx],
            space=self.space,
        )

    @classmethod
    def empty(
        cls, t: float, sensor: str, dim_x: int = 4, dim_z: int = 2, space: str = "point"
    ) -> Tracks:
        z = np.zeros
        return cls(
            t=t,
            sensor=sensor,
            ids=z(0, np.int64),
            status=z(0, np.int64),
            x=z((0, dim_x)),
            P=z((0, dim_x, dim_x)),
            position=z((0, 2)),
            position_cov=z((0, 2, 2)),
            age=z(0, np.int64),
            hits=z(0, np.int64),
            time_since_update=z(0),
            cov_trace=z(0),
            updated=z(0, bool),
            nis=z(0),
            innovation=z((0, dim_z)),
            innovation_cov=z((0, dim_z, dim_z)),
            scores=z(0),
            labels=z(0, np.int64),
            det_index=z(0, np.int64),
            space=space,
        )

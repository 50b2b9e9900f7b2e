"""Input integrity: rejected inputs, bad timestamps, frozen frames, stuck detections, ranges."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numba as nb
import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from perception.detections import Detections
from perception.kernels import IN2, IN3, compiled
from safety.channels import ChannelConfig, FieldOfView
from safety.context import ChannelObservation, MonitorSpec, StepContext
from safety.findings import Finding, Impact
from safety.monitors.base import ChannelSet, MonitorSettings, finding, label, measurement_time


class IntegrityConfig(MonitorSettings):
    """Integrity bounds. Counts are consecutive steps; margins say how far outside is 'far'."""

    max_age_s: float | None = Field(default=None, gt=0)  # None: the channel's timeout_s
    future_tolerance_s: float = Field(default=0.1, ge=0)  # measurement ahead of supervisor time
    frozen_frames: int = Field(default=3, ge=2)  # identical image digests in a row
    stuck_steps: int = Field(default=3, ge=2)  # bit-identical non-empty detection lists in a row
    # (only for lists handed in as detections: see IntegrityMonitor._stuck)
    range_margin_m: float = Field(default=10.0, ge=0)  # beyond the ground field of view ...
    range_sigmas: float = Field(default=5.0, ge=0)  # ... plus this many σ of the declared noise
    range_margin_px: float = Field(default=50.0, ge=0)  # beyond the image rectangle
    max_abs_coordinate: float = Field(default=1e5, gt=0)  # physically impossible beyond this


@dataclass
class _ChannelState:
    last_mt: float | None = None
    digest: str | None = None
    frozen: int = 0
    stuck_key: bytes | None = None  # the last list's coordinates (float64, C order) ...
    stuck_shape: tuple[int, ...] = ()  # ... and its shape
    stuck: int = 0


_KIND_SAFE = re.compile(r"[^a-z0-9_]+")


class IntegrityMonitor:
    """Per channel: is what arrived well-formed, fresh, moving and physically plausible?"""

    spec = MonitorSpec(
        name="integrity",
        watches="each channel's input: rejection reason, timestamps, image digest, detections",
        threshold="any rejected input; timestamp backwards, ahead by > tolerance or older than "
        "max age; N identical frames / handed-in detection lists in a row; detections beyond the "
        "field of view by a margin",
        impact=Impact.CHANNEL,
        kinds=(
            "integrity.nan",
            "integrity.shape",
            "integrity.type",
            "integrity.detector_crash",
            "integrity.detector_garbage",
            "integrity.detector_overrun",
            "integrity.invalid",
            "integrity.time_backwards",
            "integrity.time_future",
            "integrity.stale_timestamp",
            "integrity.frozen_frame",
            "integrity.stuck_detections",
            "integrity.range",
        ),
    )

    def __init__(self, cfg: IntegrityConfig, channels: Sequence[ChannelConfig]) -> None:
        self.cfg = cfg
        self.channels = ChannelSet(channels)
        self._state: dict[str, _ChannelState] = {}

    def reset(self) -> None:
        """Forget per-channel history."""
        self._state.clear()

    def observe(self, ctx: StepContext) -> list[Finding]:
        """Findings for every channel whose input this step fails a check."""
        out: list[Finding] = []
        for name, ch, obs in self.channels.visit(ctx):
            if obs is None or not obs.received:
                continue
            st = self._state.get(name)
            if st is None:  # built only when new (not a throwaway default every step)
                st = self._state[name] = _ChannelState()
            if obs.input_error is not None or obs.error_kind is not None:
                out.append(self._rejected(ctx, name, obs))
            if obs.input_error is None:  # (rejected input: no timestamp checks)
                mt = measurement_time(obs)
                # the quiet case decided here; _timestamps builds the findings when one fires
                if mt is not None and (
                        (st.last_mt is not None and mt < st.last_mt)
                        or not -self.cfg.future_tolerance_s <= ctx.t - mt <= (
                            self.cfg.max_age_s if self.cfg.max_age_s is not None
                            else ch.timeout_s)):
                    out += self._timestamps(ctx, name, ch, obs, st)
                elif mt is not None:
                    st.last_mt = mt
            if obs.image_stats is not None:
                out += self._frozen(ctx, name, obs, st)
            dets = obs.detections
            if obs.input_error is None and dets is not None:
                if obs.image_stats is None:
                    if self._stuck_step(dets, st):
                        out += self._stuck(ctx, name, dets, st, counted=True)
                else:
                    st.stuck_key, st.stuck = None, 0
                out += self._range(ctx, name, ch, dets)
        return out

    def _stuck_step(self, dets: Detections, st: _ChannelState) -> bool:
        """:meth:`_stuck`'s count for this step (kept in ``st``); True when it reports."""
        z = np.asarray(dets.z)
        if z.shape[0] == 0:
            st.stuck_key, st.stuck = None, 0
            return False
        data = (z.tobytes() if z.dtype == np.float64
                else np.ascontiguousarray(z, dtype=np.float64).tobytes())  # C order either way
        if st.stuck_key is not None and st.stuck_shape == z.shape and data == st.stuck_key:
            st.stuck += 1
        else:
            st.stuck_key, st.stuck_shape, st.stuck = data, z.shape, 1
        return st.stuck >= self.cfg.stuck_steps

    # ---------------------------------------------------------------- checks
    def _rejected(self, ctx: StepContext, name: str, obs: ChannelObservation) -> Finding:
        kind = _KIND_SAFE.sub("_", str(obs.error_kind or "invalid").lower()).strip("_") or "invalid"
        reason = obs.input_error or kind.replace("_", " ")
        return finding(
            self.spec,
            f"integrity.{kind}",
            ctx.t,
            f"The input of {label(name)} was rejected ({reason}), so it is ignored.",
            channel=name,
            value=1.0,
            threshold=0.0,
        )

    def _timestamps(
        self,
        ctx: StepContext,
        name: str,
        ch: ChannelConfig,
        obs: ChannelObservation,
        st: _ChannelState,
    ) -> list[Finding]:
        mt = measurement_time(obs)
        if mt is None or obs.input_error is not None:
            return []
        out: list[Finding] = []
        if st.last_mt is not None and mt < st.last_mt:
            out.append(
                finding(
                    self.spec,
                    "integrity.time_backwards",
                    ctx.t,
                    f"The timestamp of {label(name)} went backwards by {st.last_mt - mt:.3f} s "
                    f"(from {st.last_mt:.3f} s to {mt:.3f} s).",
                    channel=name,
                    value=st.last_mt - mt,
                    threshold=0.0,
                )
            )
        st.last_mt = mt
        age = ctx.t - mt
        max_age = self.cfg.max_age_s if self.cfg.max_age_s is not None else ch.timeout_s
        if age > max_age:
            out.append(
                finding(
                    self.spec,
                    "integrity.stale_timestamp",
                    ctx.t,
                    f"The data of {label(name)} is {age:.2f} s old (limit {max_age:.2f} s).",
                    channel=name,
                    value=age,
                    threshold=max_age,
                    window=age,
                )
            )
        elif -age > self.cfg.future_tolerance_s:
            out.append(
                finding(
                    self.spec,
                    "integrity.time_future",
                    ctx.t,
                    f"The timestamp of {label(name)} is {-age:.3f} s in the future "
                    f"(tolerance {self.cfg.future_tolerance_s:.3f} s).",
                    channel=name,
                    value=-age,
                    threshold=self.cfg.future_tolerance_s,
                )
            )
        return out

    def _frozen(
        self, ctx: StepContext, name: str, obs: ChannelObservation, st: _ChannelState
    ) -> list[Finding]:
        stats = obs.image_stats
        if stats is None:
            return []
        if st.digest is not None and stats.digest == st.digest:
            st.frozen += 1
        else:
            st.digest, st.frozen = stats.digest, 1
        if st.frozen < self.cfg.frozen_frames:
            return []
        return [
            finding(
                self.spec,
                "integrity.frozen_frame",
                ctx.t,
                f"The image of {label(name)} has not changed for {st.frozen} frames "
                f"(limit {self.cfg.frozen_frames}); the camera may be frozen.",
                channel=name,
                value=st.frozen,
                threshold=self.cfg.frozen_frames,
            )
        ]

    def _stuck(
        self, ctx: StepContext, name: str, dets: Detections, st: _ChannelState,
        counted: bool = False,
    ) -> list[Finding]:
        """Identical detection lists handed in step after step: a sensor re-sending its last output.

        Only for lists that carry measurement noise (handed in as detections), where three
        bit-identical non-empty lists cannot happen by chance. Detections the supervisor derived
        from an image itself are exempt: an integer-pixel box detector returns identical boxes
        for a slow or static scene (ego waiting at a light) while the image changes every frame,
        and a frozen image is the frozen-frame (digest) check's job.
        """
        if not counted and not self._stuck_step(dets, st):
            return []
        z = np.asarray(dets.z)
        return [
            finding(
                self.spec,
                "integrity.stuck_detections",
                ctx.t,
                f"{label(name).capitalize()} has reported exactly the same {z.shape[0]} detections "
                f"for {st.stuck} steps (limit {self.cfg.stuck_steps}); its output looks stuck.",
                channel=name,
                value=st.stuck,
                threshold=self.cfg.stuck_steps,
            )
        ]

    def _range(
        self, ctx: StepContext, name: str, ch: ChannelConfig, dets: Detections
    ) -> list[Finding]:
        z = dets.z
        if (type(z) is np.ndarray and z.ndim == 2 and dets.space != "box"
                and ch.frame != "image"):
            # the usual ground channel: one kernel call, the finding built only if it fires
            R = dets.R
            n = z.shape[0]
            if (n and z.shape[1] >= 2 and type(R) is np.ndarray and R.ndim == 3
                    and R.shape[0] == n and R.shape[1] >= 2 and R.shape[2] >= 2):
                c = self.cfg
                fov = ch.fov
                try:
                    n_bad = _count_far_ground(
                        z, R, c.max_abs_coordinate, c.range_margin_m, c.range_sigmas,
                        fov.range_min, fov.range_max, fov.azimuth_min_deg, fov.azimuth_max_deg)
                except TypeError:  # not float64: the general path
                    pass
                else:
                    return [] if n_bad == 0 else self._range_finding(ctx, name, z, n_bad, "m")
        z = np.asarray(dets.z, dtype=np.float64)
        if z.shape[0] == 0 or z.ndim != 2 or z.shape[1] < 2:
            return []
        fov = ch.fov
        if dets.space == "box" or ch.frame == "image":
            pos = z[:, :2]
            absurd = ~np.all(np.abs(pos) <= self.cfg.max_abs_coordinate, axis=1)
            has_image = fov.image_width is not None and fov.image_height is not None
            inside = (
                fov.contains(pos, margin=-self.cfg.range_margin_px)
                if has_image
                else np.ones(len(pos), dtype=bool)
            )
            unit, margin = "px", self.cfg.range_margin_px
            n_bad = int(np.count_nonzero(absurd | ~inside))
        else:
            # a detection is far outside only beyond the margin plus range_sigmas of its own
            # declared noise (a camera's range σ reaches 3 m at 80 m: a car at the edge of the
            # field of view is measured up to ~10 m beyond it, honestly)
            R = np.asarray(dets.R, dtype=np.float64)
            unit, margin = "m", self.cfg.range_margin_m
            if R.ndim != 3 or (R.shape[0] == z.shape[0] and min(R.shape[1:]) >= 2):
                n_bad = _count_far_ground(
                    z, R if R.ndim == 3 else _NO_R, self.cfg.max_abs_coordinate, margin,
                    self.cfg.range_sigmas, fov.range_min, fov.range_max, fov.azimuth_min_deg,
                    fov.azimuth_max_deg)
            else:  # an R the kernel does not take (numpy broadcasts or raises as before)
                pos = z[:, :2]
                absurd = ~np.all(np.abs(pos) <= self.cfg.max_abs_coordinate, axis=1)
                sd = np.sqrt(np.clip(R[:, 0, 0] + R[:, 1, 1], 0.0, None))
                margins = self.cfg.range_margin_m + self.cfg.range_sigmas * sd
                n_bad = int(np.count_nonzero(absurd | ~_inside_ground(fov, pos, margins)))
        if n_bad == 0:
            return []
        return self._range_finding(ctx, name, z, n_bad, unit)

    def _range_finding(self, ctx: StepContext, name: str, z: NDArray[np.float64], n_bad: int,
                       unit: str) -> list[Finding]:
        """The ``integrity.range`` finding: ``n_bad`` of the detections ``z`` far outside."""
        margin = self.cfg.range_margin_m if unit == "m" else self.cfg.range_margin_px
        extra = f" (plus {self.cfg.range_sigmas:g} σ of their noise)" if unit == "m" else ""
        return [
            finding(
                self.spec,
                "integrity.range",
                ctx.t,
                f"{label(name).capitalize()} reported {n_bad} of {z.shape[0]} detections more than "
                f"{margin:g} {unit}{extra} outside its field of view or physical range.",
                channel=name,
                value=n_bad,
                threshold=0.0,
            )
        ]


_NO_R = np.zeros((0, 2, 2))  # stands for "no per-detection R": no noise widening
_DEG = 180.0 / math.pi  # as np.degrees


@compiled(nb.int64(IN2, IN3, nb.float64, nb.float64, nb.float64, nb.float64, nb.float64,
                   nb.float64, nb.float64))
def _count_far_ground(z, R, max_abs, margin, sigmas, range_min, range_max, az_min, az_max):
    """How many ground detections (first two columns of ``z``) have an absurd coordinate or lie
    outside the field of view grown by ``margin`` + ``sigmas`` σ of their own noise (σ from the
    trace of R's position block; none when R is empty): ``_inside_ground`` in one call."""
    n = z.shape[0]
    has_r = R.shape[0] > 0
    bad = 0
    for i in range(n):
        x = z[i, 0]
        y = z[i, 1]
        if not (abs(x) <= max_abs and abs(y) <= max_abs):
            bad += 1
            continue
        sd = 0.0
        if has_r:
            v = R[i, 0, 0] + R[i, 1, 1]
            sd = np.sqrt(v if not v < 0.0 else 0.0)  # np.clip(v, 0): NaN stays NaN
        grow = margin + sigmas * sd
        r = np.hypot(x, y)
        az = np.arctan2(y, x) * _DEG
        ang = grow / (r if not r < 1e-6 else 1e-6) * _DEG  # np.maximum(r, 1e-6)
        if not (r >= range_min - grow and r <= range_max + grow and az >= az_min - ang
                and az <= az_max + ang):
            bad += 1
    return bad


def _inside_ground(fov: FieldOfView, pos: NDArray[np.float64], grow: NDArray[np.float64]
                   ) -> NDArray[np.bool_]:
    """``fov.contains`` with a per-point outward margin ``grow`` (m)."""
    r = np.hypot(pos[:, 0], pos[:, 1])
    az = np.degrees(np.arctan2(pos[:, 1], pos[:, 0]))
    ang = np.degrees(grow / np.maximum(r, 1e-6))
    return np.asarray(
        (r >= fov.range_min - grow)
        & (r <= fov.range_max + grow)
        & (az >= fov.azimuth_min_deg - ang)
        & (az <= fov.azimuth_max_deg + ang)
    )

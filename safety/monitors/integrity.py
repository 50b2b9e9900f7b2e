"""Input integrity: rejected inputs, bad timestamps, frozen frames, stuck detections, ranges."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from perception.detections import Detections
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
    stuck_key: bytes | None = None
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
            out += self._timestamps(ctx, name, ch, obs, st)
            out += self._frozen(ctx, name, obs, st)
            if obs.input_error is None and obs.detections is not None:
                if obs.image_stats is None:
                    out += self._stuck(ctx, name, obs.detections, st)
                else:
                    st.stuck_key, st.stuck = None, 0
                out += self._range(ctx, name, ch, obs.detections)
        return out

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
        self, ctx: StepContext, name: str, dets: Detections, st: _ChannelState
    ) -> list[Finding]:
        """Identical detection lists handed in step after step: a sensor re-sending its last output.

        Only for lists that carry measurement noise (handed in as detections), where three
        bit-identical non-empty lists cannot happen by chance. Detections the supervisor derived
        from an image itself are exempt: an integer-pixel box detector returns identical boxes
        for a slow or static scene (ego waiting at a light) while the image changes every frame,
        and a frozen image is the frozen-frame (digest) check's job.
        """
        z = np.asarray(dets.z)
        if z.shape[0] == 0:
            st.stuck_key, st.stuck = None, 0
            return []
        key = repr(z.shape).encode() + np.ascontiguousarray(z, dtype=np.float64).tobytes()
        if key == st.stuck_key:
            st.stuck += 1
        else:
            st.stuck_key, st.stuck = key, 1
        if st.stuck < self.cfg.stuck_steps:
            return []
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
        z = np.asarray(dets.z, dtype=np.float64)
        if z.shape[0] == 0 or z.ndim != 2 or z.shape[1] < 2:
            return []
        pos = z[:, :2]
        absurd = ~np.all(np.abs(pos) <= self.cfg.max_abs_coordinate, axis=1)
        fov = ch.fov
        has_image = fov.image_width is not None and fov.image_height is not None
        if dets.space == "box" or ch.frame == "image":
            inside = (
                fov.contains(pos, margin=-self.cfg.range_margin_px)
                if has_image
                else np.ones(len(pos), dtype=bool)
            )
            unit, margin = "px", self.cfg.range_margin_px
        else:
            # a detection is far outside only beyond the margin plus range_sigmas of its own
            # declared noise (a camera's range σ reaches 3 m at 80 m: a car at the edge of the
            # field of view is measured up to ~10 m beyond it, honestly)
            R = np.asarray(dets.R, dtype=np.float64)
            sd = (np.sqrt(np.clip(R[:, 0, 0] + R[:, 1, 1], 0.0, None)) if R.ndim == 3
                  else np.zeros(len(pos)))
            margins = self.cfg.range_margin_m + self.cfg.range_sigmas * sd
            inside = _inside_ground(fov, pos, margins)
            unit, margin = "m", self.cfg.range_margin_m
        bad = absurd | ~inside
        n_bad = int(np.count_nonzero(bad))
        if n_bad == 0:
            return []
        extra = f" (plus {self.cfg.range_sigmas:g} σ of their noise)" if unit == "m" else ""
        return [
            finding(
                self.spec,
                "integrity.range",
                ctx.t,
                f"{label(name).capitalize()} reported {n_bad} of {len(pos)} detections more than "
                f"{margin:g} {unit}{extra} outside its field of view or physical range.",
                channel=name,
                value=n_bad,
                threshold=0.0,
            )
        ]


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

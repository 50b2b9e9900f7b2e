"""Fault injectors: each corrupts one channel's output stream inside its active window.

A fault is active from the step its ``start`` trigger fires (always, from the first step, if
``start`` is omitted) until its ``stop`` trigger fires or ``duration`` has elapsed. Several
faults on one channel compose in order (:class:`FaultChain`). Every fault records its active
intervals (``intervals``, ``onsets``, ``active(t)``) for the metrics, and says what it does in
one line (``describe()``).

Channel outputs are ``Detections`` (point or box), rendered frames (``ndarray``), ``None`` (no
output this step) or, after some faults, raw objects the supervisor must reject (NaN
corruption yields a plain dict) or hand to the channel's detector (:class:`DetectorInput`).
Detector faults (crash, hang) act through :class:`FaultyDetector`, the detector the runner
registers with the supervisor for the channel; a hang advances the injected :class:`SimClock`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from numpy.random import Generator, SeedSequence
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from perception.detections import Detections
from sim.rng import child, root
from sim.triggers import Trigger, TriggerConfig, TriggerContext

__all__ = [
    "BiasRampFault",
    "BiasStepFault",
    "BlurFault",
    "ConfidenceFault",
    "DarknessFault",
    "DetectorCrashFault",
    "DetectorHangFault",
    "DetectorInput",
    "DropoutFault",
    "Fault",
    "FaultChain",
    "FaultConfig",
    "FaultyDetector",
    "FrozenFault",
    "GhostFault",
    "GlareFault",
    "JitterFault",
    "LatencyFault",
    "MissedFault",
    "NanFault",
    "NoiseFault",
    "PassthroughDetector",
    "ReorderFault",
    "SimClock",
    "build_fault_chains",
    "fault_key",
    "make_fault",
]

FloatArray = NDArray[np.float64]
Output = Any  # Detections | ndarray | dict | DetectorInput | None


# ============================================================================ configs
class _FaultBase(BaseModel):
    """Common fields: the channel, the activation window and an optional stable name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str = Field(min_length=1)
    start: TriggerConfig | None = None  # None: active from the first step
    stop: TriggerConfig | None = None  # None: never stops (unless duration)
    duration: float | None = Field(default=None, gt=0)
    repeat: bool = False  # re-arm the start trigger after a stop
    name: str | None = None  # stable key for the fault's random stream (default: index + kind)


class DropoutFault(_FaultBase):
    """The channel delivers nothing (each output lost with ``probability``)."""

    kind: Literal["dropout"] = "dropout"
    probability: float = Field(default=1.0, ge=0, le=1)


class FrozenFault(_FaultBase):
    """The channel repeats its last output from before the onset (``restamp``: with fresh times)."""

    kind: Literal["frozen"] = "frozen"
    restamp: bool = True


class LatencyFault(_FaultBase):
    """Outputs arrive ``delay`` s late, still stamped with their original time."""

    kind: Literal["latency"] = "latency"
    delay: float = Field(default=0.5, gt=0)


class JitterFault(_FaultBase):
    """Timestamps get Gaussian jitter of ``sigma`` s (may go backwards)."""

    kind: Literal["jitter"] = "jitter"
    sigma: float = Field(default=0.05, gt=0)


class ReorderFault(_FaultBase):
    """With ``probability`` an output is held back and delivered after the next one (out of order).

    The held output takes the place of the output after that one, which is lost.
    """

    kind: Literal["reorder"] = "reorder"
    probability: float = Field(default=0.5, ge=0, le=1)


class NoiseFault(_FaultBase):
    """Extra Gaussian noise: ``sigma`` m (points), px (box centres) or grey levels (frames).

    The declared covariance is unchanged unless ``inflate_R`` (the honest-sensor case).
    """

    kind: Literal["noise"] = "noise"
    sigma: float = Field(default=1.0, gt=0)
    inflate_R: bool = False


class BiasStepFault(_FaultBase):
    """A constant offset: (dx, dy) m for points, (du, dv) px for boxes and frames (image shift)."""

    kind: Literal["bias_step"] = "bias_step"
    offset: tuple[float, float] = (1.0, 0.0)


class BiasRampFault(_FaultBase):
    """Calibration drift: offset grows at ``rate`` (m/s or px/s) from onset, to ``max_offset``."""

    kind: Literal["bias_ramp"] = "bias_ramp"
    rate: tuple[float, float] = (0.1, 0.0)
    max_offset: float | None = Field(default=None, gt=0)


class GhostFault(_FaultBase):
    """``count`` false objects that persist and move plausibly (constant velocity + small noise).

    Point outputs: spawned in the ground sector ``range`` × ``azimuth_deg``, relative speed up to
    ``max_speed`` m/s. Box outputs and frames: boxes in an ``image_size`` image (frames get
    them painted in the actor hue ``hue``).
    """

    kind: Literal["ghost"] = "ghost"
    count: int = Field(default=1, ge=1)
    range: tuple[float, float] = (10.0, 40.0)
    azimuth_deg: tuple[float, float] = (-20.0, 20.0)
    max_speed: float = Field(default=3.0, ge=0)
    sigma_accel: float = Field(default=0.3, ge=0)
    sigma: float = Field(default=0.5, gt=0)  # declared position sigma (m) / box edge sigma (px)
    score: float = Field(default=0.7, ge=0, le=1)
    label: int = 0
    image_size: tuple[int, int] = (640, 480)
    hue: int = Field(default=8, ge=0, le=179)


class MissedFault(_FaultBase):
    """Each detection is additionally missed with ``probability``."""

    kind: Literal["missed"] = "missed"
    probability: float = Field(default=0.5, ge=0, le=1)


class ConfidenceFault(_FaultBase):
    """Distribution shift: scores → clip(scale·score + shift, 0, 1)."""

    kind: Literal["confidence"] = "confidence"
    scale: float = Field(default=0.5, ge=0)
    shift: float = 0.0


class GlareFault(_FaultBase):
    """A bright saturated region on frames (centre and radius as fractions of the image)."""

    kind: Literal["glare"] = "glare"
    center: tuple[float, float] = (0.5, 0.4)
    radius: float = Field(default=0.25, gt=0)
    intensity: float = Field(default=1.0, gt=0, le=1)


class DarknessFault(_FaultBase):
    """Night / underexposure on frames: gain and gamma down, sensor noise up."""

    kind: Literal["darkness"] = "darkness"
    gain: float = Field(default=0.25, gt=0, le=1)
    gamma: float = Field(default=1.8, gt=0)
    noise_sigma: float = Field(default=6.0, ge=0)


class BlurFault(_FaultBase):
    """Defocus / motion blur on frames: Gaussian blur of ``sigma`` px."""

    kind: Literal["blur"] = "blur"
    sigma: float = Field(default=4.0, gt=0)


class NanFault(_FaultBase):
    """A ``fraction`` of values become NaN; Detections turn into a plain dict of arrays.

    (``Detections`` refuses NaN, so a corrupted channel hands over raw arrays the supervisor must
    reject.) Frames become float32 with NaN pixels.
    """

    kind: Literal["nan"] = "nan"
    fraction: float = Field(default=0.2, gt=0, le=1)


class DetectorCrashFault(_FaultBase):
    """The channel's detector raises (through :class:`FaultyDetector`)."""

    kind: Literal["detector_crash"] = "detector_crash"


class DetectorHangFault(_FaultBase):
    """The channel's detector takes ``seconds`` per call (advances the :class:`SimClock`)."""

    kind: Literal["detector_hang"] = "detector_hang"
    seconds: float = Field(default=0.5, gt=0)


FaultConfig = Annotated[
    DropoutFault
    | FrozenFault
    | LatencyFault
    | JitterFault
    | ReorderFault
    | NoiseFault
    | BiasStepFault
    | BiasRampFault
    | GhostFault
    | MissedFault
    | ConfidenceFault
    | GlareFault
    | DarknessFault
    | BlurFault
    | NanFault
    | DetectorCrashFault
    | DetectorHangFault,
    Field(discriminator="kind"),
]

_DETECTOR_KINDS = ("detector_crash", "detector_hang")
_FRAME_KINDS = ("glare", "darkness", "blur")


# ============================================================================ detector plumbing
class SimClock:
    """A settable clock for the supervisor (``clock=sim_clock``): hangs advance it, not the wall."""

    def __init__(self, t: float = 0.0) -> None:
        self.now = float(t)

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        """Move the clock forward by ``dt`` seconds."""
        self.now += float(dt)

    def set(self, t: float) -> None:
        """Set the clock (e.g. to the simulation time at the start of a step)."""
        self.now = float(t)


@dataclass(frozen=True)
class DetectorInput:
    """A measurement-level output routed through the channel's detector (not a Detections)."""

    detections: Detections


class PassthroughDetector:
    """A detector for measurement-level channels: unwraps :class:`DetectorInput` unchanged."""

    input_kind = "any"

    def __init__(self, name: str = "passthrough") -> None:
        self.name = name

    def detect(self, frame: Any, t: float) -> Detections:
        """The wrapped detections; a raw dict of arrays (as NaN corruption yields) is validated
        as Detections, so corrupt values raise ``InvalidDetectionsError``; anything else TypeError.
        """
        if isinstance(frame, DetectorInput):
            return frame.detections
        if isinstance(frame, Detections):
            return frame
        if isinstance(frame, dict) and {"z", "R", "scores", "labels", "t"} <= set(frame):
            return Detections(**frame)
        raise TypeError(f"{self.name} expects DetectorInput, got {type(frame).__name__}")


class FaultyDetector:
    """Wraps a detector: raises while ``crash`` is set; each call advances ``clock`` by hang_s."""

    def __init__(
        self, inner: Any | None = None, clock: SimClock | None = None, name: str | None = None
    ) -> None:
        self.inner = inner if inner is not None else PassthroughDetector()
        self.clock = clock
        self.name = name or str(getattr(self.inner, "name", "detector"))
        self.input_kind = getattr(self.inner, "input_kind", "image")
        self.crash = False
        self.hang_s = 0.0
        self.calls = 0

    def detect(self, frame: Any, t: float) -> Detections:
        """Run the inner detector, unless a fault makes it crash or hang."""
        self.calls += 1
        if self.hang_s > 0 and self.clock is not None:
            self.clock.advance(self.hang_s)
        if self.crash:
            raise RuntimeError(f"{self.name}: injected detector crash")
        out: Detections = self.inner.detect(frame, t)
        return out

    def reset(self) -> None:
        """Reset the inner detector if it has state."""
        reset = getattr(self.inner, "reset", None)
        if callable(reset):
            reset()


# ============================================================================ runtime faults
class Fault:
    """Runtime fault: activation bookkeeping (triggers → intervals) plus ``apply`` on outputs."""

    def __init__(self, cfg: Any, rng: Generator) -> None:
        self.cfg = cfg
        self.kind: str = cfg.kind
        self.channel: str = cfg.channel
        self.rng = rng
        self._start = Trigger(cfg.start) if cfg.start is not None else None
        self._stop = Trigger(cfg.stop) if cfg.stop is not None else None
        self.is_active = False
        self.intervals: list[tuple[float, float | None]] = []
        self._armed = True
        self.onset: float | None = None  # start of the current/last interval
        self.t = 0.0

    # ---------------------------------------------------------------- activation
    def update(self, ctx: TriggerContext) -> bool:
        """Evaluate the triggers at ``ctx`` (once per simulation step); return whether active."""
        t = float(ctx.t)
        self.t = t
        if not self.is_active:
            if self._armed:
                fire = True if self._start is None else self._start.evaluate(ctx)
                if fire:
                    self._activate(t)
                    return True
            return False
        stop = False
        if self.cfg.duration is not None and self.onset is not None:
            stop = t >= self.onset + self.cfg.duration - 1e-12
        if self._stop is not None:
            stop = self._stop.evaluate(ctx) or stop
        if stop:
            self._deactivate(t)
        return self.is_active

    def _activate(self, t: float) -> None:
        self.is_active = True
        self.onset = t
        self.intervals.append((t, None))
        self._armed = bool(self.cfg.repeat) and self._start is not None
        self.on_activate(t)

    def _deactivate(self, t: float) -> None:
        self.is_active = False
        s, _ = self.intervals[-1]
        self.intervals[-1] = (s, t)
        if self.cfg.repeat and self._start is not None:
            self._armed = True
            self._start.reset()
        if self._stop is not None:
            self._stop.reset()
        self.on_deactivate(t)

    def on_activate(self, t: float) -> None:
        """Hook: the fault just became active."""

    def on_deactivate(self, t: float) -> None:
        """Hook: the fault just ended."""

    def active(self, t: float | None = None) -> bool:
        """Active now (``t`` None) or at time ``t`` according to the recorded intervals."""
        if t is None:
            return self.is_active
        return any(s <= t and (e is None or t < e) for s, e in self.intervals)

    @property
    def onsets(self) -> list[float]:
        """Start times of all active intervals."""
        return [s for s, _ in self.intervals]

    def describe(self) -> str:
        """One line: channel, what the fault does, and when."""
        when = "from the start" if self._start is None else f"from {self._start.describe()}"
        if self.cfg.duration is not None:
            when += f" for {self.cfg.duration:g} s"
        if self._stop is not None:
            when += f" until {self._stop.describe()}"
        return f"{self.channel}: {self.kind} ({self.what()}) {when}"

    def what(self) -> str:
        """The fault's parameters in words."""
        fields = self.cfg.model_dump(
            exclude={"channel", "start", "stop", "duration", "repeat", "name", "kind"}
        )
        return ", ".join(f"{k}={v}" for k, v in fields.items()) or "-"

    # ---------------------------------------------------------------- effect
    def apply(self, t: float, x: Output) -> Output:
        """Transform the channel output ``x`` produced at time ``t`` (identity when inactive)."""
        return self.corrupt(t, x) if self.is_active else x

    def corrupt(self, t: float, x: Output) -> Output:
        """The corruption itself (called only while active)."""
        return x


# ---------------------------------------------------------------- helpers
def _with(d: Detections, **changes: Any) -> Detections:
    kw: dict[str, Any] = {
        "z": d.z,
        "R": d.R,
        "scores": d.scores,
        "labels": d.labels,
        "t": d.t,
        "sensor": d.sensor,
        "space": d.space,
        "range_rate": d.range_rate,
    }
    kw.update(changes)
    return Detections(**kw)


def _is_frame(x: Output) -> bool:
    return isinstance(x, np.ndarray) and x.ndim in (2, 3)


def _shift_xy(d: Detections, offset: FloatArray) -> Detections:
    """Offset point positions, or box centres (u, v), by ``offset`` (N, 2) or (2,)."""
    if len(d) == 0:
        return d
    z = d.z.copy()
    z[:, :2] += offset
    return _with(d, z=z)


def _translate_frame(img: NDArray[Any], offset: Sequence[float] | FloatArray) -> NDArray[Any]:
    h, w = img.shape[:2]
    M = np.array([[1.0, 0.0, float(offset[0])], [0.0, 1.0, float(offset[1])]], dtype=np.float64)
    return cv2.warpAffine(img, M, (w, h), borderMode=cv2.BORDER_REPLICATE)


# ---------------------------------------------------------------- stream faults
class DropoutFaultRt(Fault):
    """See :class:`DropoutFault`."""

    def corrupt(self, t: float, x: Output) -> Output:
        p = self.cfg.probability
        if p >= 1.0:
            return None
        return None if self.rng.random() < p else x


class FrozenFaultRt(Fault):
    """See :class:`FrozenFault`."""

    def __init__(self, cfg: Any, rng: Generator) -> None:
        super().__init__(cfg, rng)
        self._last: Output = None
        self._held: Output = None

    def on_activate(self, t: float) -> None:
        self._held = self._last

    def apply(self, t: float, x: Output) -> Output:
        if not self.is_active:
            if x is not None:
                self._last = x
            return x
        held = self._held
        if held is None:
            return None
        if isinstance(held, Detections) and self.cfg.restamp and x is not None:
            return held.with_time(x.t if isinstance(x, Detections) else t)
        if isinstance(held, np.ndarray):
            return held.copy()
        return held


class LatencyFaultRt(Fault):
    """See :class:`LatencyFault`."""

    def __init__(self, cfg: Any, rng: Generator) -> None:
        super().__init__(cfg, rng)
        self._queue: deque[tuple[float, Output]] = deque()

    def apply(self, t: float, x: Output) -> Output:
        if not self.is_active:
            self._queue.clear()
            return x
        if x is not None:
            self._queue.append((t + self.cfg.delay, x))
        out: Output = None
        while self._queue and self._queue[0][0] <= t + 1e-9:
            out = self._queue.popleft()[1]
        return out


class JitterFaultRt(Fault):
    """See :class:`JitterFault`."""

    def corrupt(self, t: float, x: Output) -> Output:
        if isinstance(x, Detections):
            return x.with_time(x.t + self.cfg.sigma * float(self.rng.standard_normal()))
        return x


class ReorderFaultRt(Fault):
    """See :class:`ReorderFault`."""

    def __init__(self, cfg: Any, rng: Generator) -> None:
        super().__init__(cfg, rng)
        self._held: Output = None
        self._age = 0

    def apply(self, t: float, x: Output) -> Output:
        if self._held is not None:
            self._age += 1
            if self._age >= 2:  # the held one arrives now, in place of x
                out, self._held = self._held, None
                return out
            return x  # the next one overtakes the held one
        if self.is_active and x is not None and self.rng.random() < self.cfg.probability:
            self._held, self._age = x, 0
            return None
        return x


class NoiseFaultRt(Fault):
    """See :class:`NoiseFault`."""

    def corrupt(self, t: float, x: Output) -> Output:
        s = self.cfg.sigma
        if isinstance(x, Detections):
            n = len(x)
            if n == 0:
                return x
            d = _shift_xy(x, s * self.rng.standard_normal((n, 2)))
            if self.cfg.inflate_R:
                R = d.R.copy()
                R[:, 0, 0] += s * s
                R[:, 1, 1] += s * s
                d = _with(d, R=R)
            return d
        if _is_frame(x):
            noisy = x.astype(np.float32) + self.rng.standard_normal(
                x.shape, dtype=np.float32
            ) * np.float32(s)
            return (
                np.clip(noisy, 0, 255).astype(x.dtype)
                if x.dtype == np.uint8
                else noisy.astype(x.dtype)
            )
        return x


class BiasStepFaultRt(Fault):
    """See :class:`BiasStepFault`."""

    def offset(self, t: float) -> FloatArray:
        """The offset applied at time ``t`` (while active)."""
        return np.asarray(self.cfg.offset, dtype=np.float64)

    def corrupt(self, t: float, x: Output) -> Output:
        off = self.offset(t)
        if isinstance(x, Detections):
            return _shift_xy(x, off)
        if _is_frame(x):
            return _translate_frame(x, off)
        return x


class BiasRampFaultRt(BiasStepFaultRt):
    """See :class:`BiasRampFault`."""

    def offset(self, t: float) -> FloatArray:
        onset = self.onset if self.onset is not None else t
        off = np.asarray(self.cfg.rate, dtype=np.float64) * max(0.0, t - onset)
        cap = self.cfg.max_offset
        norm = float(np.hypot(off[0], off[1]))
        if cap is not None and norm > cap:
            off = off * (cap / norm)
        return off


class GhostFaultRt(Fault):
    """See :class:`GhostFault`. Ghost state is created at onset and persists while active."""

    def __init__(self, cfg: Any, rng: Generator) -> None:
        super().__init__(cfg, rng)
        self._space: str | None = None
        self._pos = np.zeros((0, 2))
        self._vel = np.zeros((0, 2))
        self._size = np.zeros((0, 2))
        self._last_t: float | None = None

    def on_activate(self, t: float) -> None:
        self._space = None
        self._last_t = None

    def _spawn(self, space: str) -> None:
        c = self.cfg
        n = c.count
        u = self.rng.random((n, 4))
        if space == "point":
            r = c.range[0] + (c.range[1] - c.range[0]) * u[:, 0]
            a = np.radians(c.azimuth_deg[0] + (c.azimuth_deg[1] - c.azimuth_deg[0]) * u[:, 1])
            self._pos = np.column_stack([r * np.cos(a), r * np.sin(a)])
            sp = c.max_speed * u[:, 2]
            h = 2 * np.pi * u[:, 3]
            self._vel = np.column_stack([sp * np.cos(h), sp * np.sin(h)])
        else:
            w, hgt = c.image_size
            self._pos = np.column_stack([w * (0.2 + 0.6 * u[:, 0]), hgt * (0.5 + 0.3 * u[:, 1])])
            self._size = np.column_stack([20 + 40 * u[:, 2], 20 + 40 * u[:, 3]])
            sp = self.rng.random((n, 2)) * 2 - 1
            self._vel = sp * 10.0 * max(c.max_speed, 0.0)  # px/s
        self._space = space

    def _advance(self, t: float) -> None:
        dt = 0.0 if self._last_t is None else max(0.0, t - self._last_t)
        self._last_t = t
        if dt > 0:
            n = len(self._pos)
            scale = self.cfg.sigma_accel * math.sqrt(dt) * (1.0 if self._space == "point" else 10.0)
            self._vel = self._vel + scale * self.rng.standard_normal((n, 2))
            self._pos = self._pos + self._vel * dt

    def ghost_positions(self) -> FloatArray:
        """Current ghost positions (m for points, px for boxes/frames)."""
        return self._pos.copy()

    def corrupt(self, t: float, x: Output) -> Output:
        c = self.cfg
        if isinstance(x, Detections):
            space: str = x.space
        elif _is_frame(x):
            space = "frame"
        else:
            return x
        if self._space != space:
            self._spawn(space)
        self._advance(t)
        n = len(self._pos)
        scores = np.clip(c.score + 0.05 * self.rng.standard_normal(n), 0.01, 1.0)
        if isinstance(x, Detections):
            if space == "point":
                g = Detections.from_points(
                    self._pos,
                    t=x.t,
                    sigma=c.sigma,
                    scores=scores,
                    labels=np.full(n, c.label),
                    sensor=x.sensor,
                )
            else:
                xyxy = np.column_stack([self._pos - self._size / 2, self._pos + self._size / 2])
                g = Detections.from_boxes(
                    xyxy,
                    t=x.t,
                    scores=scores,
                    labels=np.full(n, c.label),
                    sensor=x.sensor,
                    sigma_px=c.sigma,
                )
            rr = None
            if x.range_rate is not None:
                rr = np.concatenate([x.range_rate, np.zeros(n)])
            return Detections(
                np.concatenate([x.z, g.z]),
                np.concatenate([x.R, g.R]),
                np.concatenate([x.scores, g.scores]),
                np.concatenate([x.labels, g.labels]),
                x.t,
                x.sensor,
                x.space,
                rr,
            )
        img = np.array(x, copy=True)
        hsv = np.array([[[c.hue, 220, 210]]], np.uint8)
        colour = tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])
        for (cu, cv_), (w, h) in zip(self._pos, self._size, strict=True):
            p1 = (round(cu - w / 2), round(cv_ - h / 2))
            p2 = (round(cu + w / 2), round(cv_ + h / 2))
            cv2.rectangle(img, p1, p2, colour if img.ndim == 3 else int(np.mean(colour)), -1)
        return img


class MissedFaultRt(Fault):
    """See :class:`MissedFault`."""

    def corrupt(self, t: float, x: Output) -> Output:
        if isinstance(x, Detections) and len(x):
            keep = self.rng.random(len(x)) >= self.cfg.probability
            return x.subset(keep)
        return x


class ConfidenceFaultRt(Fault):
    """See :class:`ConfidenceFault`."""

    def corrupt(self, t: float, x: Output) -> Output:
        if isinstance(x, Detections) and len(x):
            s = np.clip(x.scores * self.cfg.scale + self.cfg.shift, 0.0, 1.0)
            return _with(x, scores=s)
        return x


# ---------------------------------------------------------------- image faults
class GlareFaultRt(Fault):
    """See :class:`GlareFault`."""

    def corrupt(self, t: float, x: Output) -> Output:
        if not _is_frame(x):
            return x
        h, w = x.shape[:2]
        c = self.cfg
        cy, cx = c.center[1] * h, c.center[0] * w
        rad = c.radius * max(h, w)
        yy, xx = np.ogrid[:h, :w]
        d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / (rad * rad)
        alpha = (c.intensity * np.clip(1.5 - d2, 0.0, 1.0)).astype(np.float32)  # saturated core
        if x.ndim == 3:
            alpha = alpha[..., None]
        out = x.astype(np.float32) * (1 - alpha) + 255.0 * alpha
        return np.clip(out, 0, 255).astype(x.dtype)


class DarknessFaultRt(Fault):
    """See :class:`DarknessFault`."""

    def corrupt(self, t: float, x: Output) -> Output:
        if not _is_frame(x):
            return x
        c = self.cfg
        f = np.clip(x.astype(np.float32) / 255.0, 0.0, 1.0) ** np.float32(c.gamma)
        out = 255.0 * c.gain * f
        if c.noise_sigma > 0:
            out = out + self.rng.standard_normal(x.shape, dtype=np.float32) * np.float32(
                c.noise_sigma
            )
        return np.clip(out, 0, 255).astype(x.dtype)


class BlurFaultRt(Fault):
    """See :class:`BlurFault`."""

    def corrupt(self, t: float, x: Output) -> Output:
        if not _is_frame(x):
            return x
        return cv2.GaussianBlur(x, (0, 0), self.cfg.sigma)


class NanFaultRt(Fault):
    """See :class:`NanFault`."""

    def corrupt(self, t: float, x: Output) -> Output:
        frac = self.cfg.fraction
        if isinstance(x, Detections):
            z = np.array(x.z, dtype=np.float64)
            if len(z) == 0:
                z = np.full((1, x.dim), np.nan)
                R = np.tile(np.eye(x.dim), (1, 1, 1))
                scores, labels = np.ones(1), np.zeros(1, np.int64)
            else:
                R, scores, labels = np.array(x.R), np.array(x.scores), np.array(x.labels)
                mask = self.rng.random(z.shape) < frac
                if not mask.any():
                    mask.flat[int(self.rng.integers(z.size))] = True
                z[mask] = np.nan
            return {
                "z": z,
                "R": R,
                "scores": scores,
                "labels": labels,
                "t": x.t,
                "sensor": x.sensor,
                "space": x.space,
            }
        if _is_frame(x):
            img = x.astype(np.float32)
            mask = self.rng.random(img.shape[:2]) < frac
            if not mask.any():
                mask.flat[int(self.rng.integers(mask.size))] = True
            img[mask] = np.nan
            return img
        return x


# ---------------------------------------------------------------- detector faults
class _DetectorFaultRt(Fault):
    def __init__(self, cfg: Any, rng: Generator) -> None:
        super().__init__(cfg, rng)
        self.detector: FaultyDetector | None = None

    def bind(self, detector: FaultyDetector) -> None:
        """Attach the channel's :class:`FaultyDetector`."""
        self.detector = detector
        self._sync()

    def update(self, ctx: TriggerContext) -> bool:
        active = super().update(ctx)
        self._sync()
        return active

    def _sync(self) -> None:
        pass


class DetectorCrashFaultRt(_DetectorFaultRt):
    """See :class:`DetectorCrashFault`."""

    def _sync(self) -> None:
        if self.detector is not None:
            self.detector.crash = self.is_active


class DetectorHangFaultRt(_DetectorFaultRt):
    """See :class:`DetectorHangFault`."""

    def _sync(self) -> None:
        if self.detector is not None:
            self.detector.hang_s = self.cfg.seconds if self.is_active else 0.0


_RUNTIME: dict[str, type[Fault]] = {
    "dropout": DropoutFaultRt,
    "frozen": FrozenFaultRt,
    "latency": LatencyFaultRt,
    "jitter": JitterFaultRt,
    "reorder": ReorderFaultRt,
    "noise": NoiseFaultRt,
    "bias_step": BiasStepFaultRt,
    "bias_ramp": BiasRampFaultRt,
    "ghost": GhostFaultRt,
    "missed": MissedFaultRt,
    "confidence": ConfidenceFaultRt,
    "glare": GlareFaultRt,
    "darkness": DarknessFaultRt,
    "blur": BlurFaultRt,
    "nan": NanFaultRt,
    "detector_crash": DetectorCrashFaultRt,
    "detector_hang": DetectorHangFaultRt,
}


def fault_key(cfg: Any, index: int) -> str:
    """The stable key of a fault's random stream: its ``name``, else ``"<index>:<kind>"``."""
    return cfg.name if cfg.name else f"{index}:{cfg.kind}"


def make_fault(cfg: Any, rng: Generator | SeedSequence | int) -> Fault:
    """Instantiate the runtime fault for ``cfg`` with its own generator."""
    gen = rng if isinstance(rng, Generator) else np.random.default_rng(root(rng))
    return _RUNTIME[cfg.kind](cfg, gen)


# ============================================================================ chains
class FaultChain:
    """One channel's faults, applied in order; ``update`` once per step, ``apply`` per output."""

    def __init__(self, channel: str, faults: Sequence[Fault] = ()) -> None:
        self.channel = channel
        self.faults: list[Fault] = list(faults)
        self.detector: FaultyDetector | None = None

    @property
    def needs_detector(self) -> bool:
        """Whether a detector fault is present (route outputs through :class:`FaultyDetector`)."""
        return any(f.kind in _DETECTOR_KINDS for f in self.faults)

    def make_detector(
        self, inner: Any | None = None, clock: SimClock | None = None, name: str | None = None
    ) -> FaultyDetector:
        """A :class:`FaultyDetector` around ``inner`` (default passthrough), bound to the faults."""
        det = FaultyDetector(inner, clock, name or f"{self.channel}.detector")
        self.detector = det
        for f in self.faults:
            if isinstance(f, _DetectorFaultRt):
                f.bind(det)
        return det

    def update(self, ctx: TriggerContext) -> list[bool]:
        """Evaluate every fault's triggers at this step."""
        if not self.faults:
            return []
        return [f.update(ctx) for f in self.faults]

    def apply(self, t: float, x: Output) -> Output:
        """Pass one output (or None) through the faults in order.

        If a measurement-level channel has a :class:`FaultyDetector`, Detections leave wrapped in
        :class:`DetectorInput` so the supervisor routes them through it.
        """
        if not self.faults and self.detector is None:
            return x
        for f in self.faults:
            x = f.apply(t, x)
        if self.detector is not None and isinstance(x, Detections):
            return DetectorInput(x)
        return x

    def active(self, t: float | None = None) -> list[Fault]:
        """Faults active now (or at ``t``)."""
        return [f for f in self.faults if f.active(t)]


def build_fault_chains(
    configs: Sequence[Any], seed_seq: SeedSequence | int, channels: Sequence[str] | None = None
) -> dict[str, FaultChain]:
    """One chain per channel; fault i draws from ``child(seed_seq, "fault", fault_key(cfg, i))``.

    ``channels`` (optional) lists valid channel names: a fault on another name is an error.
    """
    ss = root(seed_seq)
    chains: dict[str, FaultChain] = {c: FaultChain(c) for c in (channels or ())}
    for i, cfg in enumerate(configs):
        if channels is not None and cfg.channel not in chains:
            raise ValueError(f"fault {i} ({cfg.kind}) targets unknown channel {cfg.channel!r}")
        gen = np.random.default_rng(child(ss, "fault", fault_key(cfg, i)))
        chains.setdefault(cfg.channel, FaultChain(cfg.channel)).faults.append(make_fault(cfg, gen))
    return chains


def frame_only(cfg: Any) -> bool:
    """Whether a fault kind only affects rendered frames (glare, darkness, blur)."""
    return cfg.kind in _FRAME_KINDS


FaultFactory = Callable[[Any, Generator], Fault]

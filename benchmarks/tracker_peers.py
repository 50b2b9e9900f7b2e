"""Vigil's tracker against peer trackers on the same real detections: frames/s, MOTA, IDF1.

Data: the MOT15 sequences shipped inside the py-motmetrics wheel (real pedestrian video;
detections = a real tracker's boxes with IDs dropped). Every tracker gets the same boxes; all
outputs are scored by the same evaluator (perception.metrics, equal to py-motmetrics).

Peers (SORT via filterpy, norfair, motpy, Roboflow's ``trackers``) pin older libraries, so they
may live in their own environment. Make one and pass its interpreter:

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install filterpy scipy norfair motpy trackers
    python benchmarks/tracker_peers.py --peer-python /tmp/peers/bin/python

Without --peer-python, peers importable in this environment run here; others are reported absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perception.metrics import evaluate
from perception.mot import SAMPLES, detections_by_frame, read_mot, sample_paths, track_detections
from perception.tracker import Tracker

HERE = Path(__file__).resolve().parent
PEERS = ("sort", "norfair", "motpy", "trackers-sort", "trackers-bytetrack")


def vigil_run(det_path: Path, out: Path, repeat: int) -> float:
    """Best-of-``repeat`` seconds for Vigil's box tracker over the whole sequence."""
    dets = detections_by_frame(read_mot(det_path))
    best = float("inf")
    seq = None
    for _ in range(repeat):
        tr = Tracker(
            model="box",
            gating="iou",
            iou_threshold=0.3,
            n_init=3,
            init_window=3,
            max_coast=1.0,
            max_cov_trace=1e12,
            sensor="camera",
        )
        t0 = time.perf_counter()
        seq = track_detections(dets, tr)
        best = min(best, time.perf_counter() - t0)
    assert seq is not None
    from perception.mot import write_mot

    write_mot(out, seq)
    return best


def peer_run(name: str, det_path: Path, out: Path, python: str, repeat: int) -> dict | None:
    cmd = [
        python,
        str(HERE / "peers" / "run_peer.py"),
        name,
        str(det_path),
        str(out),
        "--repeat",
        str(repeat),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"  {name}: not run ({last})")
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--peer-python", default=sys.executable, help="interpreter that has the peers")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--sequence", choices=SAMPLES, action="append")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-peers-"))
    for name in a.sequence or list(SAMPLES):
        gt_path, det_path = sample_paths(name)
        gt = read_mot(gt_path, min_confidence=1).by_frame()
        n_frames = len(read_mot(det_path).frames)
        rows = []
        sec = vigil_run(det_path, tmp / "vigil.txt", a.repeat)
        s = evaluate(gt, read_mot(tmp / "vigil.txt").by_frame())
        rows.append(("vigil", n_frames / sec, s.mota, s.idf1, s.num_switches))
        for p in PEERS:
            r = peer_run(p, det_path, tmp / f"{p}.txt", a.peer_python, a.repeat)
            if r is None:
                continue
            s = evaluate(gt, read_mot(tmp / f"{p}.txt").by_frame())
            rows.append((p, r["fps"], s.mota, s.idf1, s.num_switches))
        print(f"\n{name}: {n_frames} frames, same detections for all")
        print(f"{'tracker':<20}{'frames/s':>12}{'MOTA':>9}{'IDF1':>9}{'IDsw':>6}")
        for r in rows:
            print(f"{r[0]:<20}{r[1]:>12.0f}{r[2]:>9.3f}{r[3]:>9.3f}{r[4]:>6d}")
        peers = [r for r in rows if r[0] != "vigil"]
        if peers:
            fastest = max(peers, key=lambda r: r[1])
            v = rows[0]
            print(
                f"vigil / fastest peer ({fastest[0]}): {v[1] / fastest[1]:.2f}x frames/s; "
                f"MOTA {v[2] - fastest[2]:+.3f}, IDF1 {v[3] - fastest[3]:+.3f}  "
                f"(target: >= 3x at equal or better MOTA and IDF1)"
            )
            best_mota = max(r[2] for r in peers)
            best_idf1 = max(r[3] for r in peers)
            print(
                f"vigil vs best peer: MOTA {v[2] - best_mota:+.3f}, IDF1 {v[3] - best_idf1:+.3f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

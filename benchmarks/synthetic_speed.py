"""How long `merkit demo`'s synthetic set takes to write, and how big it is; prints one JSON line.

Usage: python benchmarks/synthetic_speed.py [--subjects 12] [--clips 10] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2

from merkit.synthetic.dataset import SyntheticConfig, generate_casme2_like, render_clip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    config = SyntheticConfig(
        n_subjects=args.subjects, clips_per_subject=args.clips, size=args.size, n_frames=args.frames
    )

    start = time.perf_counter()
    frames, _ = render_clip("happiness", 1, 0, config, n_frames=200, onset=50, apex=70, offset=110)
    render_ms = (time.perf_counter() - start) * 1000 / len(frames)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        root = generate_casme2_like(Path(tmp), config)
        seconds = time.perf_counter() - start
        files = list(root.rglob("*.jpg"))
        size_mb = sum(p.stat().st_size for p in files) / 2**20
    print(
        json.dumps(
            {
                "benchmark": "synthetic_speed",
                "subjects": config.n_subjects,
                "clips": config.n_subjects * config.clips_per_subject,
                "frames": len(files),
                "size": config.size,
                "generate_s": round(seconds, 2),
                "ms_per_written_frame": round(seconds * 1000 / len(files), 3),
                "ms_per_rendered_frame": round(render_ms, 3),
                "jpeg_mb": round(size_mb, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

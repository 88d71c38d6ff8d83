"""
Where group-wise semantic mining loses to CAM: its seeds from the maps accumulated during training (the bundle
default, as the reference does), from the trained graph's maps computed afterwards (``graph_maps`` mean / pre /
post), and CAM's seeds from the classifier the group-wise network starts from.

Runs on a finished ``benchmarks/cam_seeds.py`` work folder (it reuses that run's classifier, group-wise training and
stage records; nothing is trained here): for each dataset and seed there, three more ``make_seeds.json`` stages
with ``--seed_method groupwise --seeds::methods::groupwise::maps '$None'`` and
``--seeds::methods::groupwise::graph_maps mean | pre | post``, run through ``cam_seeds.py --stage`` so they are
scored exactly as the benchmark's own seeds are (pooled IoU on the training images at the bundle's background score).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cam_seeds.py --datasets la2018 default blood_smear \\
        --la2018_slice_step 8 --skip_speed --threads 2
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/groupwise_maps.py --threads 2

Writes ``benchmarks/results/groupwise_maps.json`` and prints a markdown table: seed mIoU / foreground IoU, mean ±
half range over the seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from monai_wsss.utils import atomic_write_json

HERE = Path(__file__).resolve().parent

VARIANTS = ("mean", "pre", "post")


def _metrics(path: Path) -> dict:
    with open(path) as f:
        m = json.load(f)["metrics"]
    return {"seed_miou": m["seed_miou"], "seed_fg_iou": m["seed_fg_iou"], "best_fg_iou": m["best_threshold"]["fg_iou"]}


def run(work: Path, out_dir: Path, threads: int, resume: bool) -> dict:
    results: dict = {}
    for ds_dir in sorted(p for p in work.iterdir() if p.is_dir()):
        for seed_dir in sorted(ds_dir.glob("seed*")):
            base = seed_dir / "stage_seeds_groupwise_spec.json"
            if not base.is_file() or not (seed_dir / "stage_seeds_groupwise.json").is_file():
                continue
            row = {
                "cam": _metrics(seed_dir / "stage_seeds_cam.json"),
                "accumulated": _metrics(seed_dir / "stage_seeds_groupwise.json"),
            }
            for variant in VARIANTS:
                folder = out_dir / ds_dir.name / seed_dir.name / variant
                result = folder / "result.json"
                if not (resume and result.is_file()):
                    folder.mkdir(parents=True, exist_ok=True)
                    with open(base) as f:
                        spec = json.load(f)
                    spec["overrides"].update(
                        {
                            "output_dir": str(folder / "outputs"),
                            "seeds::methods::groupwise::maps": "$None",
                            "seeds::methods::groupwise::graph_maps": variant,
                        }
                    )
                    spec.update(result=str(result), threads=threads)
                    atomic_write_json(str(folder / "spec.json"), spec)
                    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
                    with open(folder / "stage.log", "w") as log:
                        subprocess.run(
                            [sys.executable, str(HERE / "cam_seeds.py"), "--stage", str(folder / "spec.json")],
                            check=True,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            env=env,
                        )
                row[f"computed_{variant}"] = _metrics(result)
                print(f"[{ds_dir.name}/{seed_dir.name}] {variant}: {row[f'computed_{variant}']}", flush=True)
            results.setdefault(ds_dir.name, {})[seed_dir.name] = row
    return results


def table(results: dict) -> str:
    cols = ["cam", "accumulated", "computed_mean", "computed_pre", "computed_post"]
    lines = [
        "| dataset | seeds | " + " | ".join(cols) + " |",
        "| --- | --- | " + " | ".join("---" for _ in cols) + " |",
    ]
    for ds, seeds in results.items():
        cells = []
        for c in cols:
            pair = []
            for key in ("seed_miou", "seed_fg_iou"):
                v = [s[c][key] for s in seeds.values()]
                pair.append(f"{np.mean(v):.3f}" + (f" ± {np.ptp(v) / 2:.3f}" if len(v) > 1 else ""))
            cells.append(" / ".join(pair))
        lines.append(f"| {ds} | {len(seeds)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work_dir", default="/tmp/cam_seeds_bench", help="a finished cam_seeds.py work folder")
    p.add_argument("--out_dir", default="/tmp/groupwise_maps_bench")
    p.add_argument("--out", default=str(HERE / "results" / "groupwise_maps.json"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="reuse finished variants")
    args = p.parse_args()
    results = run(Path(args.work_dir), Path(args.out_dir), args.threads, args.resume)
    if not results:
        raise SystemExit(f"{args.work_dir}: no finished cam_seeds.py group-wise stages found.")
    what = "seed_miou, seed_fg_iou, best_fg_iou: pooled IoU on the training images at the bundle's background score"
    atomic_write_json(args.out, {"metrics": what, "runs": results})
    print("\nseed mIoU / foreground IoU, mean ± half range over seeds\n" + table(results))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()

"""
How fast is the data path around the network (issue 18, item 7)? Two figures, measured in CPU time:

1. DTC: the ratio of one full training iteration of the DTC bundle (``bundles/dtc_semisupervised_seg``,
   ``configs/train.json`` through ``monai.bundle.ConfigWorkflow``: :py:class:`monai_wsss.data.TwoStreamLoader` over
   two ``CacheDataset`` streams, the random transforms, :py:class:`monai_wsss.transforms.SignedDistanceMapd`,
   collation, :py:class:`monai_wsss.engines.SemiSupervisedTrainer`'s step with
   :py:class:`monai_wsss.losses.DualTaskConsistencyLoss`, the optimiser and every training handler) to the network's
   forward + backward alone on the same batch (goal: at most 1.15). The full iteration is the main thread's CPU
   time between two consecutive ``GET_BATCH_STARTED`` events of the trainer (``time.thread_time``, 1 torch thread,
   ``num_workers`` 0, so all of it runs on that thread); the forward + backward is then timed on the very batches the
   trainer saw (a copy of the network and optimiser state is not needed: only time is measured, after training).
   The data part (``GET_BATCH_STARTED`` -> ``GET_BATCH_COMPLETED``) is reported on its own.
2. AdvCAM: the batched :py:class:`monai_wsss.attribution.AdvCAM` (all instances of a scale in one pass) against
   :py:func:`monai_wsss.attribution.advcam_reference` (one instance at a time) at the paper's ``T = 27``, on the
   weak-supervision bundle's classifier (ResNet-18 CAM classifier, output stride 16, 128x128, flips on) with 2 torch
   threads, on ``--advcam_images`` images (the first with two tags: ``2 x (images + 1)`` instances with flips). Also
   against the same loop with the weights frozen (:py:func:`monai_wsss.attribution.advcam.frozen_parameters`, which
   the batched call uses), which isolates the gain of batching; the maps are compared (max abs difference) in float32
   and, on the first image, in float64; and the CPU cost of one instance's forward + backward is measured at batch
   sizes 1 to 24, the ceiling of what batching can gain on this CPU.

The machine this was written on is shared by many processes (load about 5-7 on 2 cores), so wall time says little:
CPU time of this process (``time.process_time``) or of its main thread is what is reported, with the wall time of
the AdvCAM runs beside it; each figure is the median of ``--repeats`` repetitions.

How to run (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_path_speed.py            # both parts, about 2-3 min
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_path_speed.py --part dtc --data_dir ../shared/data/la2018

``--data_dir`` is a decathlon folder for the DTC part (default: the bundle's default data, 2 labelled + 1 unlabelled
brain scans; a folder with more cases gets the first 8 as labelled and the next 24 as unlabelled, the
``dtc_vs_supervised`` protocol). Writes ``benchmarks/results/data_path_speed.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch

from monai_wsss.utils import atomic_write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTC = os.path.join(REPO, "bundles", "dtc_semisupervised_seg")
ADVCAM = os.path.join(REPO, "bundles", "weakly_supervised_seg")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--part", choices=("all", "dtc", "advcam"), default="all")
    p.add_argument("--data_dir", default=None, help="decathlon folder for the DTC part (default: the bundle's data)")
    p.add_argument("--iterations", type=int, default=8, help="timed DTC iterations (after 2 untimed ones)")
    p.add_argument("--roi_size", nargs=3, type=int, default=[64, 64, 32])
    p.add_argument("--advcam_steps", type=int, default=27)
    p.add_argument("--advcam_images", type=int, default=4)
    p.add_argument("--advcam_threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "data_path_speed.json"))
    return p.parse_args(argv)


def _split(data_dir: str, work: str) -> str:
    """``data_dir`` itself when it already has an ``unlabeled`` list, else a split folder (first 8 labelled, next 24
    unlabelled, as ``benchmarks/dtc_vs_supervised.py``)."""
    from monai.data import load_decathlon_datalist

    with open(os.path.join(data_dir, "dataset.json")) as f:
        info = json.load(f)
    if info.get("unlabeled"):
        return data_dir
    items = load_decathlon_datalist(os.path.join(data_dir, "dataset.json"), True, "training", base_dir=data_dir)
    split = {
        "name": "data-path-speed-split",
        "labels": info.get("labels", {"0": "background", "1": "foreground"}),
        "training": items[:8],
        "unlabeled": [{"image": d["image"]} for d in items[8:32]],
    }
    folder = os.path.join(work, "split")
    atomic_write_json(os.path.join(folder, "dataset.json"), split)
    return folder


def dtc_part(args: argparse.Namespace) -> dict:
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    torch.set_num_threads(1)
    work = tempfile.mkdtemp(prefix="data_path_speed_")
    over = {
        "bundle_root": DTC,
        "ckpt_dir": os.path.join(work, "models"),
        "output_dir": os.path.join(work, "outputs"),
        "device": "$torch.device('cpu')",
        "num_epochs": 1,
        "epoch_length": args.iterations + 2,
        "val_interval": 10**6,
        "resume": False,
        "num_workers": 0,
        "roi_size": list(args.roi_size),
    }
    if args.data_dir:
        over["dataset_dir"] = _split(os.path.abspath(args.data_dir), work)
    wf = ConfigWorkflow(
        config_file=os.path.join(DTC, "configs", "train.json"),
        meta_file=os.path.join(DTC, "configs", "metadata.json"),
        workflow_type="train",
        **over,
    )
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train::trainer")
    starts: list[float] = []
    data: list[float] = []
    batches: list = []

    def batch_started(engine) -> None:
        starts.append(time.thread_time())

    def batch_completed(engine) -> None:
        data.append(time.thread_time() - starts[-1])
        batches.append(engine.state.batch)

    def done(engine) -> None:
        starts.append(time.thread_time())

    from monai.engines.utils import IterationEvents

    phases = ("ITERATION_STARTED", "FORWARD_COMPLETED", "LOSS_COMPLETED", "BACKWARD_COMPLETED", "MODEL_COMPLETED")
    marks: dict[str, list[float]] = {name: [] for name in phases}
    for name in phases:
        event = getattr(Events, name, None) or getattr(IterationEvents, name)
        trainer.add_event_handler(event, lambda engine, n=name: marks[n].append(time.thread_time()))
    trainer.add_event_handler(Events.GET_BATCH_STARTED, batch_started)
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, batch_completed)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, done)  # closes the last iteration (before epoch handlers)
    trainer.run()
    full = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)][2:]  # iterations 3.. (2 untimed)
    data_s = data[2:]

    network, prepare = trainer.network, trainer.prepare_batch
    fb: list[float] = []
    for batch in batches[2:]:
        x, _, x_u = prepare(batch, torch.device("cpu"), False)
        joint = torch.cat([x, x_u]) if x_u is not None else x
        network.train()
        t0 = time.thread_time()
        network.zero_grad(set_to_none=True)
        out = network(joint)
        sum(o.float().mean() for o in (out if isinstance(out, (tuple, list)) else [out])).backward()
        fb.append(time.thread_time() - t0)
    wf.finalize()

    def phase(a: str, b: str) -> float:
        return statistics.median(y - x for x, y in list(zip(marks[a], marks[b], strict=True))[2:])

    in_trainer = {
        "data_s": statistics.median(data_s),
        "forward_s": phase("ITERATION_STARTED", "FORWARD_COMPLETED"),
        "loss_s": phase("FORWARD_COMPLETED", "LOSS_COMPLETED"),
        "backward_s": phase("LOSS_COMPLETED", "BACKWARD_COMPLETED"),
        "optimizer_step_s": phase("BACKWARD_COMPLETED", "MODEL_COMPLETED"),
    }
    in_trainer["rest_s"] = statistics.median(full) - sum(in_trainer.values())  # handlers, prepare_batch, logging
    fb_in = in_trainer["forward_s"] + in_trainer["backward_s"]
    med_full, med_fb, med_data = statistics.median(full), statistics.median(fb), statistics.median(data_s)
    first = batches[2]
    return {
        "dataset_dir": wf.parser.get_parsed_content("dataset_dir"),
        "batch": {k: list(v.shape) for k, v in first.items() if isinstance(v, torch.Tensor)},
        "timed_iterations": len(full),
        "clock": "time.thread_time of the main thread, torch.set_num_threads(1), num_workers 0",
        "full_iteration_s": full,
        "forward_backward_s": fb,
        "data_s": data_s,
        "median_full_iteration_s": med_full,
        "median_forward_backward_s": med_fb,
        "median_data_s": med_data,
        "ratio_full_to_forward_backward": med_full / med_fb,
        "in_trainer_medians": in_trainer,
        "ratio_full_to_in_trainer_forward_backward": med_full / fb_in,
        "ratio_note": "ratio_full_to_forward_backward divides by the network's forward + backward timed alone on the "
        "same batches after training (a scalar loss); the in-trainer ratio divides by the trainer's own forward "
        "(ITERATION_STARTED -> FORWARD_COMPLETED, prepare_batch included) + backward (LOSS_COMPLETED -> "
        "BACKWARD_COMPLETED, the loss's backward included)",
        "goal_ratio": 1.15,
    }


def _forward_backward_per_instance(net: torch.nn.Module, batch: int, repeats: int) -> float:
    """Process CPU seconds per instance of one forward + input-gradient backward at ``batch`` instances."""
    x = torch.rand(batch, 3, 128, 128, requires_grad=True)
    torch.autograd.grad(net(x)[:, 0].sum(), x)  # warm-up
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        torch.autograd.grad(net(x)[:, 0].sum(), x)
        times.append((time.process_time() - c0) / batch)
    return statistics.median(times)


def advcam_part(args: argparse.Namespace) -> dict:
    from monai.utils import set_determinism

    from monai_wsss.attribution import AdvCAM, advcam_reference
    from monai_wsss.attribution.advcam import frozen_parameters
    from monai_wsss.networks import resnet_cam_classifier

    torch.set_num_threads(args.advcam_threads)
    set_determinism(seed=0)
    net = resnet_cam_classifier(spatial_dims=2, in_channels=3, num_classes=3, model_name="resnet18", output_stride=16)
    net.eval()
    x = torch.rand(args.advcam_images, 3, 128, 128)
    tags = torch.zeros(args.advcam_images, 3)
    tags[:, 0] = 1
    tags[0, 2] = 1  # the first image has two classes
    advcam = AdvCAM(net, steps=args.advcam_steps, flip=True)
    pos = [(int(b), int(k)) for b, k in torch.nonzero(tags > 0).tolist()]

    def one_at_a_time(images: torch.Tensor, adv: AdvCAM) -> torch.Tensor:
        out = torch.zeros(images.shape[0], tags.shape[1], *images.shape[2:], dtype=images.dtype)
        for b, k in pos:
            if b < images.shape[0]:
                out[b, k] = advcam_reference(adv, images[b], k).detach()
        return out

    def one_at_a_time_frozen() -> torch.Tensor:
        with frozen_parameters(net):
            return one_at_a_time(x, advcam)

    arms = {
        "batched": lambda: advcam(x, tags).detach(),
        "one_at_a_time": lambda: one_at_a_time(x, advcam),
        "one_at_a_time_frozen": one_at_a_time_frozen,
    }
    record: dict = {"num_images": len(x), "num_instances": len(pos) * 2, "steps": args.advcam_steps}
    AdvCAM(net, steps=1, flip=True)(x[:1], tags[:1])  # warm-up
    maps = {}
    for name, fn in arms.items():
        cpu, wall = [], []
        for _ in range(args.repeats):
            c0, w0 = time.process_time(), time.perf_counter()
            maps[name] = fn()
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        record[f"{name}_process_cpu_s"] = cpu
        record[f"{name}_wall_s"] = wall
    for name in ("one_at_a_time", "one_at_a_time_frozen"):
        suffix = "" if name == "one_at_a_time" else "_over_frozen_loop"
        for clock in ("process_cpu", "wall"):
            record[f"speedup_{clock}{suffix}"] = statistics.median(record[f"{name}_{clock}_s"]) / statistics.median(
                record[f"batched_{clock}_s"]
            )
    record["max_abs_diff"] = float((maps["batched"] - maps["one_at_a_time"]).abs().max())
    record["nonzero_fraction"] = float((maps["batched"] > 0).float().mean())
    # the same check in float64 on the first image: rounding, not a different computation, explains float32's diff
    net64 = resnet_cam_classifier(spatial_dims=2, in_channels=3, num_classes=3, model_name="resnet18", output_stride=16)
    net64.load_state_dict(net.state_dict())
    net64 = net64.double().eval()
    adv64 = AdvCAM(net64, steps=args.advcam_steps, flip=True)
    x64, tags64 = x[:1].double(), tags[:1]
    record["float64_first_image_max_abs_diff"] = float((adv64(x64, tags64) - one_at_a_time(x64, adv64)).abs().max())
    # the ceiling of batching on this CPU: cost of one instance's forward + backward against the batch size
    with frozen_parameters(net):
        record["forward_backward_cpu_s_per_instance_by_batch"] = {
            str(n): _forward_backward_per_instance(net, n, args.repeats) for n in (1, 2, 6, 12, 24)
        }
    record["threads"] = args.advcam_threads
    record["goal_speedup"] = 3.0
    return record


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = {
        "what": "issue 18 item 7: full DTC iteration vs network forward+backward; AdvCAM batched vs one at a time",
        "command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/data_path_speed.py " + " ".join(sys.argv[1:]),
        "commands": "each part records the command that produced it (parts not run are kept from the earlier file)",
        "note": "CPU time (the machine is shared, wall time unreliable); medians of the repetitions",
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "load_average_1min": os.getloadavg()[0],
        },
    }
    if os.path.isfile(args.out):
        with open(args.out) as f:
            old = json.load(f)
        report.update({k: old[k] for k in ("dtc", "advcam") if k in old})
    command = report["command"]
    if args.part in ("all", "dtc"):
        report["dtc"] = dtc_part(args)
        report["dtc"]["command"] = command
        d = report["dtc"]
        print(
            f"DTC: full iteration {d['median_full_iteration_s']:.3f} s, forward+backward "
            f"{d['median_forward_backward_s']:.3f} s, data {d['median_data_s']:.3f} s, "
            f"ratio {d['ratio_full_to_forward_backward']:.3f} (in-trainer phases: "
            f"{d['ratio_full_to_in_trainer_forward_backward']:.3f}) (CPU time, 1 thread)"
        )
        print("  in-trainer medians (s): " + ", ".join(f"{k} {v:.3f}" for k, v in d["in_trainer_medians"].items()))
    if args.part in ("all", "advcam"):
        report["advcam"] = a = advcam_part(args)
        a["command"] = command
        print(
            f"AdvCAM T={a['steps']}: speed-up {a['speedup_process_cpu']:.2f}x (process CPU), "
            f"{a['speedup_wall']:.2f}x (wall), over the loop with frozen weights "
            f"{a['speedup_process_cpu_over_frozen_loop']:.2f}x; {a['threads']} threads; max abs diff float32 "
            f"{a['max_abs_diff']:.2e}, float64 {a['float64_first_image_max_abs_diff']:.2e}"
        )
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

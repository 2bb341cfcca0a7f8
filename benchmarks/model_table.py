"""Parameters, GFLOPs and CPU time per 256^2 slice for each preset (the README's table).

Usage: ``python benchmarks/model_table.py [--threads 2] [--batch 2] [--repeats 3] [--presets tiny small paper]``

GFLOPs count 2 per multiply-add (``torch.utils.flop_counter``, attention counted through the
math kernel), the convention under which the authors' network measures 240.4 GFLOPs. Times are
the median of ``--repeats`` forward passes under ``torch.inference_mode()`` after one warm-up,
divided by the batch size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.provenance import header_line, median_seconds
from transmrsr import TransMRSR, TransMRSRConfig

AUTHORS = {"parameters_m": 160.84, "gflops": 240.4, "cpu_ms": 3480.0}


def gflops_per_slice(model: TransMRSR) -> float:
    s = model.config.img_size
    x = torch.rand(1, 1, s, s)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), sdpa_kernel([SDPBackend.MATH]), counter:
        model(x)
    return counter.get_total_flops() / 1e9


def ms_per_slice(model: TransMRSR, batch: int, repeats: int) -> float:
    s = model.config.img_size
    x = torch.rand(batch, 1, s, s)
    with torch.inference_mode():
        seconds = median_seconds(lambda: model(x), repeats, warmup=1)
    return seconds / batch * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small", "paper"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(header_line(args.threads, gpu=False, extra=f"batch {args.batch}, median of {args.repeats}"))
    print("| preset | canvas | parameters | GFLOPs / slice | CPU ms / slice |")
    print("|---|---|---|---|---|")
    for name in args.presets:
        cfg = TransMRSRConfig.from_preset(name)
        model = TransMRSR(cfg).eval()
        params = model.num_parameters() / 1e6
        gf = gflops_per_slice(model)
        ms = ms_per_slice(model, args.batch, args.repeats)
        print(f"| `{name}` | {cfg.img_size}² | {params:.2f} M | {gf:.2f} | {ms:.0f} |")
    a = AUTHORS
    print(
        f"| authors' `TGP7` (from DESIGN.md) | 256² | {a['parameters_m']:.2f} M used in forward "
        f"(183.56 M built) | {a['gflops']:.1f} | {a['cpu_ms']:.0f} (batch 1) |"
    )


if __name__ == "__main__":
    main()

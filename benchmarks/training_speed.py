"""Seconds per training step of both stages on this machine (random data, no disk I/O).

Usage: ``python benchmarks/training_speed.py [--preset small] [--batch-size 6] [--steps 3] [--threads 2]``

Stage 1 = one D step + one G step (R1 on every 16th step is not included); stage 2 = one step
of L1 + VGG19 content/style (random VGG weights: the cost is the same) and of L1 alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from benchmarks.provenance import header_line, median_seconds
from transmrsr import Discriminator, StyleSwinGenerator, TransMRSR, TransMRSRConfig
from transmrsr.losses import PerceptualLoss, VGG19Features, d_logistic_loss, g_nonsaturating_loss


def timed(fn, steps: int) -> float:
    """Median seconds of ``steps`` calls of ``fn`` after one untimed call."""
    return median_seconds(fn, steps, warmup=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--batch-size", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TransMRSRConfig.from_preset(args.preset)
    b, s = args.batch_size, cfg.img_size
    gen, disc = StyleSwinGenerator(cfg), Discriminator(cfg)
    opt_g, opt_d = torch.optim.Adam(gen.parameters()), torch.optim.Adam(disc.parameters())
    real = torch.rand(b, 1, s, s)

    def gan_step() -> None:
        z = torch.randn(b, cfg.style_dim)
        with torch.no_grad():
            fake = gen(z)
        loss = d_logistic_loss(disc(real), disc(fake))
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
        loss = g_nonsaturating_loss(disc(gen(torch.randn(b, cfg.style_dim))))
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()

    model = TransMRSR(cfg).train()
    opt = torch.optim.Adam(model.parameters())
    perceptual = PerceptualLoss(VGG19Features().requires_grad_(False).eval())
    lr, hr = torch.rand(b, 1, s, s), torch.rand(b, 1, s, s)

    def sr_step(with_vgg: bool) -> None:
        out = model(lr, phi=0.9)
        loss = F.l1_loss(out, hr)
        if with_vgg:
            c, st = perceptual(out, hr)
            loss = loss + 0.5 * c + 0.5 * st
        opt.zero_grad()
        loss.backward()
        opt.step()

    t_gan = timed(gan_step, args.steps)
    t_sr = timed(lambda: sr_step(True), args.steps)
    t_l1 = timed(lambda: sr_step(False), args.steps)
    print(header_line(args.threads, gpu=False, extra=f"preset {args.preset}, batch {b}, median of {args.steps}"))
    print(f"stage 1 (D + G step): {t_gan:.2f} s/step")
    print(f"stage 2 (L1 + VGG19 content/style): {t_sr:.2f} s/step")
    print(f"stage 2 (L1 only): {t_l1:.2f} s/step")


if __name__ == "__main__":
    main()

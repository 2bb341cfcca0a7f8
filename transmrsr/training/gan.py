"""Stage 1: the StyleSwin generative prior on HR slices from all three planes (paper §3.3, §4.3).

Non-saturating GAN loss, lazy R1 penalty on real images, separate Adam learning rates for G
and D, an EMA copy of the generator (this is what is saved and used later), a grid of samples
every ``sample_every`` steps. Runs on one CPU or, under ``accelerate launch``, on many GPUs.
The output folder holds ``config.json`` + ``model.safetensors`` of the EMA generator (loadable
with ``StyleSwinGenerator.from_pretrained``), ``training_state.pt`` for ``--resume``,
``log.jsonl`` and ``samples/``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..config import GANTrainConfig, TransMRSRConfig
from ..data.datasets import Augment, HRSliceDataset, find_volumes, split_subjects
from ..losses import d_logistic_loss, g_nonsaturating_loss, r1_penalty
from ..models import Discriminator, StyleSwinGenerator
from .common import (
    LOG_NAME,
    JsonlLogger,
    StopFlag,
    Throughput,
    atomic_torch_save,
    epoch_loader,
    load_state,
    seed_step,
    start_run,
)

logger = logging.getLogger(__name__)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1.0 - decay)


def save_sample_grid(images: torch.Tensor, path: Path, cols: int = 4) -> None:
    """Write ``(N, 1, S, S)`` images as one PNG grid (percentile window per grid)."""
    from PIL import Image

    x = images.detach().float().cpu().numpy()[:, 0]
    lo, hi = np.percentile(x, 0.5), np.percentile(x, 99.5)
    x = np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1)
    n, s, _ = x.shape
    rows = -(-n // cols)
    grid = np.zeros((rows * s, cols * s), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * s : (r + 1) * s, c * s : (c + 1) * s] = x[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((grid * 255).astype(np.uint8)).save(path)


def _saved_position_table(out: Path) -> str | None:
    """The position table of the generator saved in ``out`` (``"legacy"`` for a config.json without the field),
    or None when there is none."""
    path = out / "config.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    data.pop("architecture", None)  # written beside the config by save_pretrained
    return TransMRSRConfig.from_dict(data).position_table


def train_gan(opts: GANTrainConfig, accelerator=None) -> Path:
    """Run (or resume) stage 1; returns the output folder."""
    from tqdm.auto import tqdm

    acc, out, state_path = start_run(opts, accelerator)
    mcfg = opts.model_config()
    if opts.resume and state_path.exists():
        # a run keeps the decoder position table it started with (positions are recomputed from the config, not
        # saved with the weights): the state records it; a run from before that reads it from its config.json,
        # where a missing field means the "legacy" table of the first releases
        kind = load_state(state_path).get("position_table") or _saved_position_table(out)
        if kind and kind != mcfg.position_table:
            mcfg = dataclasses.replace(mcfg, position_table=kind).validate()
    # stage 1 has no validation loop: only an explicit val_fraction holds volumes out
    train_paths, held_out = split_subjects(find_volumes(opts.data), opts.val_fraction, opts.seed)
    dataset = HRSliceDataset(
        train_paths, mcfg.img_size, augment=Augment() if opts.augment else Augment.off(), seed=opts.seed
    )
    loader, sampler = epoch_loader(dataset, opts)

    gen, disc = StyleSwinGenerator(mcfg), Discriminator(mcfg)
    gen_ema = copy.deepcopy(gen).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(gen.parameters(), lr=opts.lr_g, betas=opts.betas)
    # lazy R1: scale D's Adam parameters as in StyleGAN2
    c = opts.r1_every / (opts.r1_every + 1)
    opt_d = torch.optim.Adam(disc.parameters(), lr=opts.lr_d * c, betas=(opts.betas[0] ** c, opts.betas[1] ** c))
    step, epoch, batch_in_epoch = 0, 0, 0
    if opts.resume and state_path.exists():
        st = load_state(state_path)
        gen.load_state_dict(st["gen"])
        disc.load_state_dict(st["disc"])
        gen_ema.load_state_dict(st["gen_ema"])
        opt_g.load_state_dict(st["opt_g"])
        opt_d.load_state_dict(st["opt_d"])
        step, epoch, batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
        acc.print(f"resumed stage 1 from {state_path} at step {step}")
    gen, disc, opt_g, opt_d = acc.prepare(gen, disc, opt_g, opt_d)
    gen_ema.to(acc.device)
    out.mkdir(parents=True, exist_ok=True)
    log = JsonlLogger(out / LOG_NAME, enabled=acc.is_main_process)
    if step == 0:
        log.log(
            event="start",
            stage="gan",
            step=0,
            options=asdict(opts),
            processes=acc.num_processes,
            train_volumes=[p.name for p in train_paths],
            held_out_volumes=[p.name for p in held_out],
        )
    else:
        log.log(event="resume", stage="gan", step=step)
    style_dim = mcfg.style_dim
    sample_z = torch.randn(16, style_dim, generator=torch.Generator().manual_seed(opts.seed)).to(acc.device)
    total = opts.max_steps
    speed = Throughput(total, step)
    bar = tqdm(total=total, initial=step, unit="step", desc="stage 1", disable=not acc.is_local_main_process)

    def save() -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {
                "position_table": mcfg.position_table,
                "stage": "gan",
                "gen": acc.unwrap_model(gen).state_dict(),
                "disc": acc.unwrap_model(disc).state_dict(),
                "gen_ema": gen_ema.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": batch_in_epoch,
            }
            atomic_torch_save(state, state_path)
            gen_ema.save_pretrained(out)

    with StopFlag() as flag:
        while total is None or step < total:
            sampler.set_position(epoch, batch_in_epoch * opts.batch_size * acc.num_processes)
            dataset.set_epoch(epoch)
            for real in acc.prepare_data_loader(loader) if acc.num_processes > 1 else loader:
                seed_step(opts.seed, acc.process_index, step)
                real = real.to(acc.device)
                b = real.shape[0]
                # ---- discriminator
                z = torch.randn(b, style_dim, device=acc.device)
                with torch.no_grad():
                    fake = gen(z)
                d_loss = d_logistic_loss(disc(real), disc(fake))
                opt_d.zero_grad(set_to_none=True)
                acc.backward(d_loss)
                opt_d.step()
                r1 = None
                if opts.r1_every > 0 and step % opts.r1_every == 0:
                    real_r = real.detach().requires_grad_(True)
                    logits = disc(real_r)
                    r1 = r1_penalty(logits, real_r)
                    opt_d.zero_grad(set_to_none=True)
                    # "+ 0 * logits": every D parameter takes part (the last bias does not move the
                    # input gradient), which DistributedDataParallel requires
                    acc.backward(opts.r1_gamma / 2 * r1 * opts.r1_every + 0 * logits.sum())
                    opt_d.step()
                # ---- generator
                z = torch.randn(b, style_dim, device=acc.device)
                g_loss = g_nonsaturating_loss(disc(gen(z)))
                opt_g.zero_grad(set_to_none=True)
                acc.backward(g_loss)
                opt_g.step()
                ema_update(gen_ema, acc.unwrap_model(gen), opts.ema_decay)
                step += 1
                batch_in_epoch += 1
                bar.update(1)
                if step % opts.log_every == 0 or step == total:
                    rate, eta = speed(step)
                    log.log(
                        stage="gan",
                        step=step,
                        epoch=epoch,
                        loss_d=d_loss.item(),
                        loss_g=g_loss.item(),
                        r1=None if r1 is None else r1.item(),
                        lr_g=opts.lr_g,
                        lr_d=opts.lr_d,
                        it_s=rate,
                        eta_s=eta,
                    )
                if opts.sample_every and step % opts.sample_every == 0 and acc.is_main_process:
                    with torch.no_grad():
                        save_sample_grid(gen_ema(sample_z), out / "samples" / f"step{step:07d}.png")
                if step % opts.checkpoint_every == 0:
                    save()
                if flag.stop or (total is not None and step >= total):
                    break
            else:
                epoch, batch_in_epoch = epoch + 1, 0
                continue
            break
    bar.close()
    save()
    if flag.stop:
        log.log(event="stopped", stage="gan", step=step)
        acc.print(f"stopped at step {step}; state saved to {state_path} (resume the run to continue it)")
    else:
        log.log(event="done", stage="gan", step=step)
    return out

"""Stage 2: super-resolution fine-tuning (paper §3.5, §4.3).

Loss ``1.0 L1 + 0.5 content + 0.5 style`` (VGG19, ImageNet weights; ``--no-perceptual`` is the
explicit, recorded opt-out), Adam β = (0.5, 0.999), learning rate halved every 30 epochs, at most
100 epochs, validation PSNR every epoch, early stop when it has not gained more than 0.05 dB for
10 epochs, the best model kept. The decoder starts from the stage-1 generator (the generative
prior) with its centroids. The output folder loads with ``TransMRSR.from_pretrained`` and works
with ``transmrsr sr --model``.

``arch="edsr"`` (``train-sr --arch edsr``) trains the EDSR-style CNN baseline instead, with the same
data, loss, optimiser, schedule and checkpoints (no prior, no truncation: ``--gan`` and ``--phi``
are not used); its folder loads with ``EDSR.from_pretrained`` / ``load_sr_model``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..config import SRTrainConfig
from ..data.datasets import Acquisition, Augment, SRPairDataset, find_volumes, split_subjects
from ..errors import ParameterError
from ..losses import PerceptualLoss, load_vgg19_features
from ..models import EDSR, EDSRConfig, StyleSwinGenerator, TransMRSR, load_sr_model
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

#: The neutral words for the ``init`` option in error messages (:mod:`transmrsr.errors`).
_INIT = {"init": "the starting model"}


def build_sr_model(opts: SRTrainConfig) -> tuple[TransMRSR | EDSR, bool]:
    """The stage-2 model with the ablation switch applied, the prior loaded from ``opts.gan``;
    with ``opts.arch == "edsr"`` the EDSR baseline of the preset, on the same canvas; with
    ``opts.init`` every weight (centroids included) from that saved SR model, which must have
    the same architecture and sizes (fine-tuning, e.g. the bundled weights on new data).

    Returns ``(model, prior_loaded)``.
    """
    model, loaded = _build_sr_model(opts)
    if opts.init:
        start = load_sr_model(opts.init)
        if type(start) is not type(model):
            raise ParameterError(
                f"{{init}} {opts.init}: holds a {type(start).__name__}, but this run trains a {type(model).__name__}",
                params=_INIT,
            )
        ours, theirs = model.config.to_dict(), start.config.to_dict()
        # phi is a run-time choice, not a size; the position table is the start model's (below)
        diff = sorted(k for k in ours if k not in ("phi", "position_table") and ours[k] != theirs.get(k))
        if diff:
            raise ParameterError(
                f"{{init}} {opts.init}: its {', '.join(diff)} differ from this run's model "
                "(pass the same {preset}, {img_size} and {ablation} as it was trained with)",
                params={**_INIT, "preset": "preset", "img_size": "img_size", "ablation": "ablation"},
            )
        if isinstance(model, TransMRSR):  # the fixed table its weights were trained with (not in the state dict)
            model.set_position_table(start.config.position_table)
        model.load_state_dict(start.state_dict())
        loaded = True
    # issue 22, frozen GP: a frozen decoder must be a pretrained one
    if isinstance(model, TransMRSR) and model.config.freeze_prior and not loaded:
        raise ParameterError(
            "{ablation} frozen-gp freezes the pretrained decoder: give the stage-1 generator ({gan}) or a "
            "starting model ({init})",
            params={"ablation": "the ablation", "gan": "gan", "init": "init"},
        )
    return model, loaded


def _build_sr_model(opts: SRTrainConfig) -> tuple[TransMRSR | EDSR, bool]:
    if opts.arch not in SRTrainConfig.ARCHS:
        raise ValueError(f"unknown arch {opts.arch!r}; choose one of {list(SRTrainConfig.ARCHS)}")
    if opts.arch == "edsr":
        if opts.ablation:
            raise ParameterError(
                f"{{ablation}} {opts.ablation} is a TransMRSR ablation; it does not apply to {{arch}} edsr",
                params={"ablation": "the ablation", "arch": "the architecture"},
            )
        return EDSR(EDSRConfig.from_preset(opts.preset, img_size=opts.model_config().img_size)), False
    if opts.ablation and opts.ablation not in SRTrainConfig.ABLATIONS:
        raise ValueError(f"unknown ablation {opts.ablation!r}; choose one of {sorted(SRTrainConfig.ABLATIONS)}")
    overrides = dict(SRTrainConfig.ABLATIONS[opts.ablation]) if opts.ablation else {}
    if opts.phi is not None:
        overrides["phi"] = opts.phi
    mcfg = opts.model_config(**overrides)
    model = TransMRSR(mcfg)
    loaded = False
    if opts.gan:
        gen = StyleSwinGenerator.from_pretrained(opts.gan)
        gcfg = gen.config
        for f in ("img_size", "style_dim", "dec_channels", "dec_depth", "window_size", "mlp_ratio", "num_centroids"):
            if getattr(gcfg, f) != getattr(mcfg, f):
                raise ValueError(
                    f"{opts.gan}: the generator's {f} ({getattr(gcfg, f)}) differs from preset {opts.preset!r}'s"
                )
        if mcfg.use_sdt and not gen.truncation.is_fitted:
            logger.warning("%s: no centroids fitted (run fit-centroids); SDT is the identity until then", opts.gan)
        loaded = model.load_generative_prior(gen)
    return model, loaded


@torch.no_grad()
def validate(model: torch.nn.Module, loader: DataLoader, device, phi=None) -> float:
    """Mean per-slice PSNR (dB, peak 1 = the volume's scaled range) over the validation slices."""
    model.eval()
    total, n = 0.0, 0
    for lr, hr in loader:
        lr, hr = lr.to(device), hr.to(device)
        sr = model(lr, phi=phi).clamp(0, None)
        mse = F.mse_loss(sr, hr, reduction="none").flatten(1).mean(1)
        total += float((10 * torch.log10(1.0 / mse.clamp_min(1e-12))).sum())
        n += lr.shape[0]
    model.train()
    return total / max(n, 1)


def train_sr(opts: SRTrainConfig, accelerator=None) -> Path:
    """Run (or resume) stage 2; returns the output folder (best model)."""
    from tqdm.auto import tqdm

    acc, out, state_path = start_run(opts, accelerator)
    perceptual = None
    if opts.perceptual:
        perceptual = PerceptualLoss(load_vgg19_features(opts.vgg_weights), opts.content_layers, opts.style_layers)
    model, prior_loaded = build_sr_model(opts)
    mcfg = model.config
    if opts.val_data:
        train_paths, val_paths = find_volumes(opts.data), find_volumes(opts.val_data)
    else:
        train_paths, val_paths = split_subjects(find_volumes(opts.data), opts.val_fraction, opts.seed)
    aug = Augment() if opts.augment else Augment.off()
    common = dict(img_size=mcfg.img_size, scale=opts.scale, thick_axis=opts.thick_axis, profile=opts.profile)
    acquisition = Acquisition.realistic() if opts.acquisition == "realistic" else None
    train_ds = SRPairDataset(train_paths, augment=aug, seed=opts.seed, acquisition=acquisition, **common)
    loader, sampler = epoch_loader(train_ds, opts)
    val_loader = None
    if val_paths:
        val_ds = SRPairDataset(val_paths, random_crop=False, **common)
        if len(val_ds) > opts.max_val_slices:  # an even subset keeps validation affordable
            keep = torch.linspace(0, len(val_ds) - 1, opts.max_val_slices).round().long().tolist()
            val_ds = torch.utils.data.Subset(val_ds, keep)
        val_loader = DataLoader(val_ds, batch_size=opts.batch_size)

    opt = torch.optim.Adam(model.parameters(), lr=opts.lr, betas=opts.betas)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=opts.lr_step_epochs, gamma=opts.lr_gamma)
    step, epoch, batch_in_epoch = 0, 0, 0
    best, history = -math.inf, []
    if opts.resume and state_path.exists():
        st = load_state(state_path)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        step, epoch, batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
        best, history = st["best"], list(st["history"])
        acc.print(f"resumed stage 2 from {state_path} at step {step} (epoch {epoch})")
    model, opt = acc.prepare(model, opt)
    if perceptual is not None:
        perceptual.to(acc.device)
    out.mkdir(parents=True, exist_ok=True)
    log = JsonlLogger(out / LOG_NAME, enabled=acc.is_main_process)
    if step == 0:
        log.log(
            event="start",
            stage="sr",
            step=0,
            options=asdict(opts),
            prior_loaded=prior_loaded,
            processes=acc.num_processes,
            perceptual=bool(perceptual),
            train_volumes=[p.name for p in train_paths],
            val_volumes=[p.name for p in val_paths],
        )
        if perceptual is None:
            log.log(event="note", stage="sr", message="perceptual terms off (perceptual=False): loss = L1 only")
        if opts.arch == "edsr" and (opts.gan or opts.phi is not None):
            log.log(
                event="note",
                stage="sr",
                message="arch edsr: the CNN baseline uses no generative prior or truncation; its gan and phi options are "
                "not used",
            )
    else:
        log.log(event="resume", stage="sr", step=step, epoch=epoch)
    steps_per_epoch = len(loader)
    total = opts.max_steps if opts.max_steps is not None else opts.epochs * steps_per_epoch
    speed = Throughput(total, step)
    bar = tqdm(total=total, initial=step, unit="step", desc="stage 2", disable=not acc.is_local_main_process)
    phi = opts.phi

    def save(best_model: bool) -> None:
        acc.wait_for_everyone()
        if not acc.is_main_process:
            return
        unwrapped = acc.unwrap_model(model)
        if best_model:
            card = _model_card(opts, unwrapped, best, step, perceptual is not None)
            unwrapped.save_pretrained(out, model_card=card)
        state = {
            "stage": "sr",
            "model": unwrapped.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "best": best,
            "history": history,
        }
        atomic_torch_save(state, state_path)

    stopped_early = False
    model.train()
    with StopFlag() as flag:
        while step < total and epoch < opts.epochs and not flag.stop:
            sampler.set_position(epoch, batch_in_epoch * opts.batch_size * acc.num_processes)
            train_ds.set_epoch(epoch)
            for lr_img, hr_img in acc.prepare_data_loader(loader) if acc.num_processes > 1 else loader:
                seed_step(opts.seed, acc.process_index, step)
                lr_img, hr_img = lr_img.to(acc.device), hr_img.to(acc.device)
                sr_img = model(lr_img, phi=phi)
                l1 = F.l1_loss(sr_img, hr_img)
                loss = opts.w_l1 * l1
                content = style = None
                if perceptual is not None:
                    content, style = perceptual(sr_img, hr_img)
                    loss = loss + opts.w_content * content + opts.w_style * style
                opt.zero_grad(set_to_none=True)
                acc.backward(loss)
                opt.step()
                step += 1
                batch_in_epoch += 1
                bar.update(1)
                if step % opts.log_every == 0 or step == total:
                    rate, eta = speed(step)
                    log.log(
                        stage="sr",
                        step=step,
                        epoch=epoch,
                        loss=loss.item(),
                        l1=l1.item(),
                        content=None if content is None else content.item(),
                        style=None if style is None else style.item(),
                        lr=opt.param_groups[0]["lr"],
                        it_s=rate,
                        eta_s=eta,
                    )
                if step % opts.checkpoint_every == 0:
                    save(best_model=False)
                if flag.stop or (step >= total and batch_in_epoch < steps_per_epoch):
                    break  # mid-epoch; a last step that ends its epoch falls through, so that epoch is validated
            else:  # a whole epoch: validate, schedule, early stop
                epoch, batch_in_epoch = epoch + 1, 0
                sched.step()
                val = validate(model, val_loader, acc.device, phi) if val_loader is not None else float("nan")
                history.append(val)
                improved = val_loader is None or val > best
                if improved:
                    best = val if val_loader is not None else best
                log.log(stage="sr", event="epoch", step=step, epoch=epoch, val_psnr=val, best_val_psnr=best)
                save(best_model=improved)
                p = opts.early_stop_patience
                if (
                    val_loader is not None
                    and len(history) > p
                    and max(history[-p:]) - max(history[:-p]) <= opts.early_stop_min_delta
                ):
                    stopped_early = True
                    log.log(event="early_stop", stage="sr", step=step, epoch=epoch)
                    break
                continue
            break
    bar.close()
    # keep a loadable model even when no epoch finished (e.g. --max-steps below one epoch)
    no_model_yet = not (out / "model.safetensors").exists()
    save(best_model=no_model_yet or val_loader is None)
    event = "stopped" if flag.stop else ("early_stop_done" if stopped_early else "done")
    log.log(event=event, stage="sr", step=step, epoch=epoch, best_val_psnr=best)
    if flag.stop:
        acc.print(f"stopped at step {step}; state saved to {state_path} (resume the run to continue it)")
    return out


def _model_card(opts: SRTrainConfig, model: TransMRSR | EDSR, best: float, step: int, perceptual: bool) -> str:
    terms = "1.0 L1 + 0.5 content + 0.5 style (VGG19)" if perceptual else "1.0 L1 only (perceptual terms off)"
    val = f"{best:.2f} dB" if math.isfinite(best) else "not measured"
    if opts.arch == "edsr":
        title = f"EDSR baseline ({model.config.preset}: {model.config.channels} channels x {model.config.num_blocks} blocks, x{opts.scale})"
        variant = "the EDSR-style CNN baseline (arch: edsr)"
    else:
        title = f"TransMRSR ({model.config.preset}, x{opts.scale})"
        variant = f"ablation: {opts.ablation or 'none'}"
    return (
        "---\nlibrary_name: transmrsr\ntags:\n- super-resolution\n- mri\n- transmrsr\n---\n\n"
        f"# {title}\n\n"
        f"Trained with `transmrsr train-sr` for {step} steps on `{Path(opts.data).name}`; thick axis {opts.thick_axis}, "
        f"{opts.profile} slice profile; loss {terms}; {variant}; "
        f"best validation PSNR (per slice, scaled range): {val}.\n"
    )

"""Inference speed of TransMRSR, side by side with the authors' network at identical architecture.

Usage::

    python benchmarks/speed.py --quick                      # meant to take < 2 minutes on an idle 2-core CPU
    python benchmarks/speed.py [--presets tiny small paper] [--batch 1 8] [--paper-batch 1 8]
        [--repeats 3] [--pairs 7] [--warmup 1] [--threads 2] [--devices cpu cuda] [--authors DIR | --no-authors]
        [--volume-presets small paper | --no-volume] [--cuda-modes fp32 bf16 compile]

What it prints (markdown):

* a header line: date, git commit of this repository, CPU model (and GPU), torch version, threads;
* one row per implementation / preset / device / dtype / batch: ms per slice and slices/s (median
  of ``--repeats`` timed forward passes under ``torch.inference_mode()``, warm-up passes not
  counted), peak memory while running (process RSS from ``resource`` on CPU, with the kernel's
  high-water mark reset before each row; ``torch.cuda.max_memory_allocated`` on GPU), and for
  our ``paper`` preset the ratio of its time to the authors' ``TGP7`` at the same device, dtype
  and batch. On CUDA each model runs in fp32, under bf16 autocast, and compiled
  (``torch.compile``, bf16 autocast);
* for ``paper`` against ``TGP7``, ``--pairs`` interleaved timings (which network goes first
  swapped each pair): the rows show each one's median over the pairs and the ratio column the
  median and range of the per-pair ratios, so that load from other processes, which on a shared
  machine moves single timings by 15-30 %, hits both networks alike;
* whole-volume seconds: a 182x218x181 T1 volume (the ICBM152 2009a template that ships with
  nilearn, centre-cropped) made thick-slice at x4 and super-resolved with
  :func:`transmrsr.inference.super_resolve`, for ``small`` (``paper`` too on GPU, or when named in
  ``--volume-presets``);
* the identical-output check: the authors' weights are loaded into our ``paper`` model
  (``authors_to_ours`` in ``benchmarks/authors.py``) and both run on the same input; the maximum
  absolute difference of the outputs is printed with what was mapped.

The authors' code (github.com/goddesshs/TransMRSR, no licence) is never part of this repository:
it is imported at run time from a folder of the user's: ``--authors DIR``, else the
``TRANSMRSR_AUTHORS_REPO`` environment variable, else ``~/.cache/transmrsr/authors`` (cloned there
with ``git clone --depth 1`` when absent). When none of these works the authors' rows are skipped
with a line that says why. Their code imports ``timm`` and ``mmcv``; nothing is installed for
them: for the few helpers it uses, small stand-in modules are put into ``sys.modules`` while their
files are imported, none of which changes what their forward pass computes. Finding, building and
mapping their network live in ``benchmarks/authors.py`` (tested by ``tests/test_authors_mapping.py``);
the header line, timer and peak-memory readers in ``benchmarks/provenance.py``.

Timings on a machine shared with other jobs are noisy: compare rows from the same run only.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if not __package__:  # run as a script: `benchmarks.…` imports need the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from torch import nn

from benchmarks.authors import (
    AUTHORS_CACHE,
    AUTHORS_ENV,
    CHECK_PHI,
    AuthorsGrey,
    authors_to_ours,
    authors_unused_modules,
    build_authors_tgp7,
    config_for_authors,
    count_params,
    find_authors_repo,
    perturb_,
    set_authors_centroids,
    set_position_tables,
)
from benchmarks.provenance import (
    Timer,
    header_line,
    median_seconds,
    peak_memory_mb,
    reset_peak_memory,
    reset_peak_rss,
    sync,
)
from transmrsr import TransMRSR, TransMRSRConfig

PRESET_ORDER = ("tiny", "small", "paper")
MODES_CUDA = ("fp32", "bf16", "compile")
MODE_LABEL = {"fp32": "fp32", "bf16": "bf16 autocast", "compile": "bf16 autocast + torch.compile"}


# ---------------------------------------------------------------------------------- timing
@dataclass
class Row:
    impl: str  # "ours" | "authors"
    preset: str
    device: str
    mode: str
    batch: int
    ms: float | None = None
    mem_mb: float | None = None
    note: str = ""


def _runner(model: nn.Module, device: str, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    fn = torch.compile(model) if mode == "compile" else model
    if mode == "fp32":
        return fn

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            return fn(x)

    return run


def time_row(model: nn.Module, row: Row, size: int, warmup: int, repeats: int, rss_resettable: bool) -> Row:
    """Fill ``row.ms`` (median ms per slice) and ``row.mem_mb`` for ``model`` on ``row``'s settings."""
    device = row.device
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    if device == "cuda" or rss_resettable:
        reset_peak_memory(device)
    try:
        run = _runner(model, device, row.mode)
        x = torch.rand(row.batch, 1, size, size, device=device)
        if row.mode == "compile":
            warmup = max(warmup, 2)
        with torch.inference_mode():
            seconds = median_seconds(lambda: run(x), repeats, warmup, device)
    except Exception as exc:  # noqa: BLE001 -- e.g. torch.compile failing on one network: say so in the row
        row.note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        return row
    row.ms = seconds / row.batch * 1000.0
    row.mem_mb = peak_memory_mb(device)
    return row


#: the CUDA modes timed (``--cuda-modes``)
cuda_modes: tuple[str, ...] = MODES_CUDA


def modes_for(device: str) -> tuple[str, ...]:
    return cuda_modes if device == "cuda" else ("fp32",)


def time_model(
    model: nn.Module,
    impl: str,
    preset: str,
    size: int,
    devices: list[str],
    batches: list[int],
    warmup: int,
    repeats: int,
    rss_resettable: bool,
    warmed: set | None = None,
    progress: Callable[[str], None] = print,
) -> list[Row]:
    rows = []
    for device in devices:
        model.to(device)
        for mode in modes_for(device):
            for batch in batches:
                key = (device, mode, batch)
                w = 0 if warmed is not None and key in warmed else warmup
                row = time_row(model, Row(impl, preset, device, mode, batch), size, w, repeats, rss_resettable)
                progress(
                    f"  {impl} {preset} {device} {MODE_LABEL[mode]} batch {batch}: "
                    + (f"{row.ms:.1f} ms/slice" if row.ms is not None else row.note)
                )
                rows.append(row)
    model.to("cpu")
    return rows


@dataclass
class Pair:
    """Interleaved timing of the authors' net and ours on one device / dtype / batch."""

    device: str
    mode: str
    batch: int
    ms_theirs: float  # median ms per slice over the pairs
    ms_ours: float
    ratios: list[float]  # ours / theirs, one per pair

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


def time_pairs(
    theirs: nn.Module,
    ours: nn.Module,
    size: int,
    devices: list[str],
    batches: list[int],
    pairs: int,
    progress: Callable[[str], None] = print,
) -> list[Pair]:
    """Time both networks alternately, ``pairs`` times per setting, the first to run swapped each
    pair, so that both see the same machine state (other load, thermal state, caches); the ratio
    is the median of the per-pair ratios. One untimed pass of each first."""
    out = []
    for device in devices:
        theirs.to(device)
        ours.to(device)
        for mode in modes_for(device):
            run_t, run_o = _runner(theirs, device, mode), _runner(ours, device, mode)
            for batch in batches:
                x = torch.rand(batch, 1, size, size, device=device)
                t_t, t_o = [], []
                with torch.inference_mode():
                    for fn in (run_t, run_o) * (2 if mode == "compile" else 1):
                        fn(x)
                        sync(device)
                    for i in range(pairs):
                        order = ((run_t, t_t), (run_o, t_o)) if i % 2 == 0 else ((run_o, t_o), (run_t, t_t))
                        for fn, acc in order:
                            with Timer(device) as t:
                                fn(x)
                            acc.append(t.seconds / batch * 1000.0)
                pair = Pair(
                    device,
                    mode,
                    batch,
                    statistics.median(t_t),
                    statistics.median(t_o),
                    [o / t for o, t in zip(t_o, t_t)],
                )
                progress(
                    f"  paired {device} {MODE_LABEL[mode]} batch {batch}: ours {pair.ms_ours:.1f} vs authors "
                    f"{pair.ms_theirs:.1f} ms/slice, ours/authors {pair.ratio:.2f} "
                    f"({min(pair.ratios):.2f}-{max(pair.ratios):.2f})"
                )
                out.append(pair)
    theirs.to("cpu")
    ours.to("cpu")
    return out


# ---------------------------------------------------------------------------------- identical outputs
@dataclass
class Check:
    max_abs_diff: float
    max_abs_diff_own_table: float | None
    max_abs_residual: float
    batch: int


# ---------------------------------------------------------------------------------- whole volume
def volume_seconds(preset: str, device: str, scale: int, batch_size: int, rss_resettable: bool) -> dict:
    from transmrsr.data import simulate_thick
    from transmrsr.data.packaged import held_out_t1
    from transmrsr.inference import super_resolve

    hr, _, _ = held_out_t1()  # the ICBM152 T1 on the paper's 182x218x181 grid
    lr = simulate_thick(hr, 2, scale)
    torch.manual_seed(0)
    model = TransMRSR(TransMRSRConfig.from_preset(preset)).eval()
    if device == "cuda":  # CUDA context, kernels and autotuning outside the timed run
        cx, cy = lr.shape[0] // 2, lr.shape[1] // 2  # a central slab: brain in every slice, none skipped
        super_resolve(
            model,
            lr[cx - 8 : cx + 8, cy - 8 : cy + 8],
            2,
            scale,
            batch_size=batch_size,
            device=device,
            show_progress=False,
        )
        sync(device)
    gc.collect()
    if device == "cuda" or rss_resettable:
        reset_peak_memory(device)
    with Timer(device) as t:
        result = super_resolve(
            model, lr, 2, scale, n_thin=hr.shape[2], batch_size=batch_size, device=device, show_progress=False
        )
    mem = peak_memory_mb(device)
    del model
    return {
        "preset": preset,
        "device": device,
        "seconds": t.seconds,
        "slices": result.slices_run,
        "shape": result.sr.shape,
        "mem_mb": mem,
        "dtype": "bf16 autocast" if device == "cuda" else "fp32",
    }


# ---------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick",
        action="store_true",
        help="tiny+small at batch 1 and 2, paper and the authors' net at batch 1 with one timed run, "
        "no whole-volume run (unless --volume-presets is given)",
    )
    ap.add_argument(
        "--presets",
        nargs="+",
        choices=PRESET_ORDER,
        default=None,
        help="presets timed (default: tiny small paper; --quick: tiny small)",
    )
    ap.add_argument("--batch", type=int, nargs="+", default=None, help="batch sizes (default 1 8; --quick: 1 2)")
    ap.add_argument(
        "--paper-batch",
        type=int,
        nargs="+",
        default=None,
        help="batch sizes for our paper preset and the authors' net (default: --batch; --quick: 1)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per row (median reported)")
    ap.add_argument(
        "--paper-repeats",
        type=int,
        default=None,
        help="timed runs for paper / authors rows (default: --repeats; --quick: 1)",
    )
    ap.add_argument(
        "--pairs",
        type=int,
        default=None,
        help="interleaved ours/authors timings per paper setting; their medians replace the rows' "
        "times (default 7; --quick: 2; 0: rows timed one network after the other)",
    )
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before each row")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument(
        "--devices", nargs="+", choices=("cpu", "cuda"), default=None, help="default: cpu, and cuda when available"
    )
    ap.add_argument(
        "--authors",
        metavar="DIR",
        default=None,
        help=f"folder holding the authors' repository (default: ${AUTHORS_ENV}, then {AUTHORS_CACHE})",
    )
    ap.add_argument("--no-authors", action="store_true", help="do not time or check the authors' network")
    ap.add_argument("--no-clone", action="store_true", help="never git clone the authors' repository")
    ap.add_argument(
        "--volume-presets",
        nargs="*",
        choices=PRESET_ORDER,
        default=None,
        help="whole-volume runs (default: small, and paper on GPU; --quick: none)",
    )
    ap.add_argument("--no-volume", action="store_true")
    ap.add_argument("--volume-batch", type=int, default=8)
    ap.add_argument(
        "--cuda-modes",
        nargs="+",
        choices=MODES_CUDA,
        default=list(MODES_CUDA),
        help="CUDA rows: fp32, bf16 (autocast), compile (torch.compile + bf16 autocast); default all",
    )
    ap.add_argument("--scale", type=int, default=4)
    args = ap.parse_args(argv)
    if args.devices is None:
        args.devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in args.devices and not torch.cuda.is_available():
        ap.error("--devices cuda: CUDA is not available")
    if args.presets is None:
        args.presets = ["tiny", "small"] if args.quick else list(PRESET_ORDER)
    if args.batch is None:
        args.batch = [1, 2] if args.quick else [1, 8]
    if args.paper_batch is None:
        args.paper_batch = [1] if args.quick else list(args.batch)
    if args.paper_repeats is None:
        args.paper_repeats = 1 if args.quick else args.repeats
    if args.pairs is None:
        args.pairs = 2 if args.quick else 7
    if args.no_volume:
        args.volume_presets = []
    elif args.volume_presets is None:
        args.volume_presets = [] if args.quick else ["small"] + (["paper"] if "cuda" in args.devices else [])
    return args


def fmt(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    global cuda_modes
    args = parse_args(argv)
    cuda_modes = tuple(m for m in MODES_CUDA if m in args.cuda_modes)
    torch.set_num_threads(args.threads)
    rss_resettable = reset_peak_rss()
    t_start = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f} s]{msg}", file=sys.stderr, flush=True)

    print(header_line(args.threads, gpu="cuda" in args.devices))
    print()
    rows: list[Row] = []
    notes: list[str] = []

    # authors' code
    authors_root, authors_source = (
        (None, "skipped: --no-authors")
        if args.no_authors
        else find_authors_repo(args.authors, allow_clone=not args.no_clone)
    )
    if authors_root is None:
        print(f"authors' TGP7: {authors_source}")
    else:
        print(f"authors' TGP7: repository found ({authors_source})")

    # our presets (paper goes with the authors' net when that loads)
    for preset in [p for p in PRESET_ORDER if p in args.presets]:
        if preset == "paper" and authors_root is not None:
            continue
        torch.manual_seed(0)
        cfg = TransMRSRConfig.from_preset(preset)
        model = TransMRSR(cfg).eval()
        model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim))
        batches = args.paper_batch if preset == "paper" else args.batch
        repeats = args.paper_repeats if preset == "paper" else args.repeats
        rows += time_model(
            model,
            "ours",
            preset,
            cfg.img_size,
            args.devices,
            batches,
            args.warmup,
            repeats,
            rss_resettable,
            progress=progress,
        )
        del model

    # the authors' TGP7 and our paper preset: identical outputs, then speed
    check: Check | None = None
    pairs: list[Pair] = []
    params: dict[str, float] = {}
    if authors_root is not None:
        cfg = config_for_authors(256)
        torch.manual_seed(0)
        try:
            progress(" building the authors' TGP7")
            theirs = build_authors_tgp7(authors_root)
        except Exception as exc:  # noqa: BLE001 -- their code: any failure means a skipped row
            print(
                f"authors' TGP7: skipped: importing or building it from {authors_root} failed: "
                f"{type(exc).__name__}: {exc}"
            )
            theirs = None
        if theirs is None:
            torch.manual_seed(0)
            model = TransMRSR(cfg).eval()
            model.truncation.set_centroids(torch.randn(cfg.num_centroids, cfg.style_dim))
            rows += time_model(
                model,
                "ours",
                "paper",
                256,
                args.devices,
                args.paper_batch,
                args.warmup,
                args.paper_repeats,
                rss_resettable,
                progress=progress,
            )
            del model
        else:
            total = count_params(theirs)
            unused = {k: count_params(m) for k, m in authors_unused_modules(theirs).items()}
            params.update(
                authors_built=total / 1e6,
                authors_used=(total - sum(unused.values())) / 1e6,
                **{f"authors_{k}": v / 1e6 for k, v in unused.items()},
            )
            perturb_(theirs, seed=1)
            g = torch.Generator().manual_seed(2)
            centroid = torch.randn(1, cfg.style_dim, generator=g)
            set_authors_centroids(theirs, centroid.repeat(cfg.num_centroids, 1))
            grey = AuthorsGrey(theirs).eval()
            check_batch = 1
            x = torch.rand(check_batch, 1, 256, 256, generator=g)
            progress(" authors' TGP7: reference output")
            with torch.inference_mode():
                y_theirs = grey(x)
            warmed = {("cpu", "fp32", check_batch)}
            rows += time_model(
                grey,
                "authors",
                "paper",
                256,
                args.devices,
                args.paper_batch,
                args.warmup,
                args.paper_repeats,
                rss_resettable,
                warmed=warmed,
                progress=progress,
            )
            state, tables = authors_to_ours(theirs, cfg)
            progress(" our paper model with the authors' weights")
            torch.manual_seed(0)
            ours = TransMRSR(cfg).eval()
            ours.load_state_dict(state, strict=True)
            del state
            params["ours"] = ours.num_parameters() / 1e6
            own_tables = set_position_tables(ours, tables)
            with torch.inference_mode():
                y_ours = ours(x, phi=CHECK_PHI)
                own_diff = None
                if not args.quick:
                    progress(" our paper model with its own position tables")
                    set_position_tables(ours, own_tables)
                    own_diff = float((ours(x, phi=CHECK_PHI) - y_theirs).abs().max())
                    set_position_tables(ours, tables)
            check = Check(
                max_abs_diff=float((y_ours - y_theirs).abs().max()),
                max_abs_diff_own_table=own_diff,
                max_abs_residual=float((y_theirs - x).abs().max()),
                batch=check_batch,
            )
            if args.pairs > 0:
                pairs = time_pairs(grey, ours, 256, args.devices, args.paper_batch, args.pairs, progress=progress)
            # our rows' memory is read with the authors' net gone, as theirs was read without ours
            del grey, theirs
            gc.collect()
            rows += time_model(
                ours,
                "ours",
                "paper",
                256,
                args.devices,
                args.paper_batch,
                args.warmup,
                args.paper_repeats,
                rss_resettable,
                warmed=warmed,
                progress=progress,
            )
            del ours

    # table
    def sort_key(r: Row):
        return (
            args.devices.index(r.device),
            PRESET_ORDER.index(r.preset),
            modes_for(r.device).index(r.mode),
            r.batch,
            r.impl != "ours",
        )

    paired = {(p.device, p.mode, p.batch): p for p in pairs}
    for r in rows:
        p = paired.get((r.device, r.mode, r.batch)) if r.preset == "paper" and r.ms is not None else None
        if p is not None:
            r.ms = p.ms_ours if r.impl == "ours" else p.ms_theirs
    authors_ms = {(r.device, r.mode, r.batch): r.ms for r in rows if r.impl == "authors"}
    mem_head = "peak RSS MB (CUDA: max allocated MB)" if "cuda" in args.devices else "peak RSS MB"
    print()
    print(
        f"| implementation | preset | device | dtype | batch | ms / slice | slices / s | {mem_head} | ours / authors (time) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=sort_key):
        impl = "ours" if r.impl == "ours" else "authors' `TGP7`"
        ratio = ""
        if r.preset == "paper" and r.impl == "ours":
            ref = authors_ms.get((r.device, r.mode, r.batch))
            ratio = f"{r.ms / ref:.2f}" if r.ms is not None and ref else ""
            p = paired.get((r.device, r.mode, r.batch))
            if p is not None and r.ms is not None and ref:
                ratio = (
                    f"**{p.ratio:.2f}** ({min(p.ratios):.2f}–{max(p.ratios):.2f} over {len(p.ratios)} pairs; "
                    f"{1 / p.ratio:.2f}× the throughput)"
                )
        elif r.impl == "authors":
            ratio = "(reference)" if r.ms is not None else ""
        sps = None if r.ms is None else 1000.0 / r.ms
        ms = fmt(r.ms, 1) if r.ms is None or r.ms < 100 else f"{r.ms:.0f}"
        cells = [
            impl,
            f"`{r.preset}`",
            r.device,
            MODE_LABEL[r.mode],
            str(r.batch),
            ms if not r.note else f"{ms} ({r.note})",
            fmt(sps, 2),
            fmt(r.mem_mb, 0),
            ratio,
        ]
        print("| " + " | ".join(cells) + " |")
    paper_reps = f"{args.paper_repeats} for paper/authors rows" if args.paper_repeats != args.repeats else ""
    notes.append(
        f"Times: median of {args.repeats} timed forward passes per row"
        + (f" ({paper_reps})" if paper_reps else "")
        + f" after {args.warmup} untimed warm-up pass(es), under torch.inference_mode(), random input, "
        "random weights; ms per slice = batch time / batch. ours / authors < 1 means ours is faster."
    )
    if pairs:
        notes.append(
            f"Paper rows: ours and the authors' net timed alternately, {args.pairs} pairs per setting, which "
            "one runs first swapped each pair; the rows show each network's median over the pairs and the "
            "ratio column the median (range) of the per-pair ratios, so that load from other processes "
            "hits both alike."
        )
    if rss_resettable:
        notes.append(
            "Peak RSS: the process's resident-memory high-water mark, reset before each row "
            "(model already built): weights + activations + the Python/torch runtime."
        )
    else:
        notes.append("Peak RSS: could not reset the high-water mark here, so each row shows the process peak so far.")
    if authors_root is not None and check is not None:
        notes.append(
            "Authors' rows: their TGP7 as they run it (a grey slice repeated on 3 input channels, "
            "output channel 0), with their truncation on (phi 0.9); ours: paper preset, phi 0.9."
        )
    print()
    for n_ in notes:
        print(f"- {n_}")

    # identical outputs
    if check is not None:
        print()
        print("## Identical outputs: the authors' TGP7 weights loaded into our `paper` model")
        print()
        print(
            f"- parameters: ours {params['ours']:.2f} M; authors' TGP7 {params['authors_built']:.2f} M built, "
            f"{params['authors_used']:.2f} M used in forward (MAB {params['authors_MAB']:.2f} M and "
            f"fusion_convs {params['authors_fusion_convs']:.2f} M are built but never called)"
        )
        print(
            "- mapped: every tensor of our model (strict load): shallow convs (their 3-channel kernel summed "
            "over its identical input channels), encoder (q rows x sqrt(d): their encoder attention omits the "
            "1/sqrt(d) scale; qkv rows reordered per head), latent layer, centroids, CWSS convs, generator "
            "(channel halves swapped in the modulated layers 4..128, since they modulate the first half and we "
            "the second; their qkv/proj split between our window and shifted-window modules), reconstruction "
            "(channel 0 of their 3-channel output conv); their sinusoidal position tables copied into our "
            "(non-weight) position buffers"
        )
        print(
            f"- input: one random 256x256 slice in [0, 1] (batch {check.batch}), eval mode; every parameter of "
            "theirs perturbed by N(0, 0.02^2) first so that zero-initialised biases, LayerNorms and the "
            "position-embedding scale alpha take part; truncation phi = 0.9 towards one centroid (repeated "
            "8 times), so their farthest-centroid rule and our nearest one pick the same vector"
        )
        print(
            f"- **max |ours - theirs| = {check.max_abs_diff:.3g}** (largest residual |output - input| "
            f"= {check.max_abs_residual:.3g})"
        )
        if check.max_abs_diff_own_table is not None:
            print(
                f"- with our own sinusoidal position tables instead of theirs: max |ours - theirs| = "
                f"{check.max_abs_diff_own_table:.3g} (the tables differ: theirs starts at position 1 and puts x "
                "before y; they enter only through the learned alpha, 0 at initialisation)"
            )
        else:
            print("- (--quick: the run with our own position tables is left out)")

    # whole volume
    if args.volume_presets:
        vol_device = "cuda" if "cuda" in args.devices else "cpu"
        results = []
        for preset in args.volume_presets:
            progress(f" whole volume, {preset}, {vol_device}")
            results.append(volume_seconds(preset, vol_device, args.scale, args.volume_batch, rss_resettable))
            gc.collect()
        print()
        mem = "CUDA max allocated MB" if vol_device == "cuda" else "peak RSS MB"
        print(f"| whole volume x{args.scale} | device | dtype | volume | slices run | seconds | slices / s | {mem} |")
        print("|---|---|---|---|---|---|---|---|")
        for v in results:
            shape = "x".join(map(str, v["shape"]))
            print(
                f"| `{v['preset']}` | {v['device']} | {v['dtype']} | {shape} | {v['slices']} | "
                f"{v['seconds']:.1f} | {v['slices'] / v['seconds']:.2f} | {v['mem_mb']:.0f} |"
            )
        print(
            f"\n- ICBM152 2009a T1 (nilearn) cropped to 182x218x181, thick-slice x{args.scale} along axis 2, "
            f"`super_resolve` with batch {args.volume_batch}, random weights; background slices are not run."
        )
    elif args.quick:
        print("\nwhole-volume runs: skipped in --quick (run without --quick, or name --volume-presets)")
    print(f"\ntotal wall time: {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

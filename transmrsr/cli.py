"""The ``transmrsr`` command line (also ``python -m transmrsr``).

Sub-commands:

* ``transmrsr info [--preset P | --model DIR_OR_REPO]`` — sizes and switches of a model.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__


def _cmd_info(args: argparse.Namespace) -> int:
    from .config import TransMRSRConfig
    from .models import TransMRSR

    if args.model:
        model = TransMRSR.from_pretrained(args.model, revision=args.revision)
        source = args.model
    else:
        model = TransMRSR(TransMRSRConfig.from_preset(args.preset))
        source = f"preset {args.preset}"
    cfg = model.config
    info = {
        "source": source,
        "preset": cfg.preset,
        "img_size": cfg.img_size,
        "parameters": model.num_parameters(),
        "num_latents": cfg.num_latents,
        "centroids_fitted": model.truncation.is_fitted,
        "phi": cfg.phi,
        "ablations": {
            "generative_prior": cfg.use_generative_prior,
            "sdt": cfg.use_sdt,
            "mref_cwss": cfg.use_cwss,
            "skip_connection": cfg.use_skip,
        },
    }
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:18s} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transmrsr", description="TransMRSR brain MRI super-resolution")
    parser.add_argument("--version", action="version", version=f"transmrsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="show the sizes and switches of a preset or a saved model")
    src = info.add_mutually_exclusive_group()
    src.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    src.add_argument("--model", help="weights folder or Hugging Face Hub repo id")
    info.add_argument("--revision", help="Hub revision (branch, tag or commit) for --model")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .hub import PretrainedLoadError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (PretrainedLoadError, ConfigError) as exc:
        print(f"transmrsr {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

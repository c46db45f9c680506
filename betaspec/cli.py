"""The ``betaspec`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def find_root(start: Path | None = None) -> Path:
    """The betaspec checkout containing ``start`` (default: the working directory)."""
    here = (start or Path.cwd()).resolve()
    for cand in [here, *here.parents]:
        if (cand / "Proofs.lean").exists() and (cand / "betaspec" / "registry.yaml").exists():
            return cand
    pkg_parent = Path(__file__).resolve().parent.parent
    if (pkg_parent / "Proofs.lean").exists():
        return pkg_parent
    raise SystemExit(
        "betaspec: not inside a betaspec checkout (no Proofs.lean and betaspec/registry.yaml above "
        f"{here}); run it from the repository or pass --root"
    )


def _cmd_check(args: argparse.Namespace) -> int:
    from .check import Tree, run_check

    tree = Tree.at(args.root or find_root())
    problems = run_check(tree)
    if problems:
        for p in problems:
            print(f"ERROR {p}", file=sys.stderr)
        print(f"betaspec check: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    from .registry import load_registry

    reg = load_registry(tree.registry_path)
    counts: dict[str, int] = {}
    for t in reg:
        counts[t.status] = counts.get(t.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"betaspec check: OK — {len(reg)} theorems ({summary}); registry, Proofs/, impl/, tests/ and lean.md agree")
    return 0


def _cmd_lean_md(args: argparse.Namespace) -> int:
    from .check import Tree, write_lean_md

    path = write_lean_md(Tree.at(args.root or find_root()))
    print(f"wrote {path}")
    return 0


def _cmd_lean_check(args: argparse.Namespace) -> int:
    from .check import Tree
    from .lean_build import LeanToolchainMissing, run_lean_check
    from .registry import load_registry

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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

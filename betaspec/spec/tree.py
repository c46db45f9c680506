"""Where the pieces of a betaspec checkout live: the Lean sources, the registry, the build record and
lean.md. Tests point a `Tree` at fixture checkouts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REGISTRY_REL = Path("betaspec") / "spec" / "registry.yaml"
RECORD_REL = Path("betaspec") / "spec" / "lean_build.json"


def _is_checkout(path: Path) -> bool:
    return (path / "Proofs.lean").exists() and (path / REGISTRY_REL).exists()


def checkout_root(start: Path | None = None) -> Path | None:
    """The betaspec checkout around ``start`` (default: the working directory) or, failing that,
    around this package; None when there is none (e.g. an installed wheel used elsewhere)."""
    starts = [start.resolve()] if start is not None else [Path.cwd().resolve()]
    starts.append(Path(__file__).resolve().parent)
    for s in starts:
        for cand in (s, *s.parents):
            if _is_checkout(cand):
                return cand
    return None


def find_root(start: Path | None = None) -> Path:
    """`checkout_root`, or SystemExit with a message saying what was looked for."""
    root = checkout_root(start)
    if root is None:
        here = (start or Path.cwd()).resolve()
        raise SystemExit(f"betaspec: not inside a betaspec checkout (no Proofs.lean and {REGISTRY_REL} above "
                         f"{here}); run it from the repository or pass --root")
    return root


@dataclass
class Tree:
    """The paths `betaspec check` reads and writes."""

    root: Path
    registry_path: Path
    record_path: Path

    @classmethod
    def at(cls, root: Path | str) -> "Tree":
        r = Path(root).resolve()
        return cls(root=r, registry_path=r / REGISTRY_REL, record_path=r / RECORD_REL)

    @property
    def lean_md(self) -> Path:
        return self.root / "lean.md"

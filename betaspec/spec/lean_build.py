"""``betaspec lean-check``: machine-check the proofs where a Lean toolchain exists.

Runs ``lake build``, then ``#print axioms`` for every registered declaration, and writes a build
record (toolchain, Mathlib revision, date, pass/fail, each declaration's axioms) that
``lean.md`` renders. Until such a record exists, lean.md says the proofs have not been
machine-checked. A ``proven`` declaration whose axioms include ``sorryAx`` or anything beyond
Lean's three standard axioms is a failure.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic_files import write_text_atomically
from .registry import Registry

STANDARD_AXIOMS = frozenset({"propext", "Classical.choice", "Quot.sound"})
RECORD_NAME = "lean_build.json"
DEFAULT_RECORD = Path(__file__).with_name(RECORD_NAME)


class LeanToolchainMissing(RuntimeError):
    """``lake`` is not on PATH."""


@dataclass
class BuildRecord:
    toolchain: str
    mathlib_rev: str
    date: str  # ISO-8601 UTC
    build_ok: bool
    axioms: dict[str, list[str]] = field(default_factory=dict)
    build_log_tail: str = ""
    sources_digest: str = ""  # sources_digest() of the tree that was built

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "BuildRecord":
        raw = json.loads(text)
        required = {"toolchain", "mathlib_rev", "date", "build_ok", "axioms"}
        missing = required - set(raw)
        if missing:
            raise ValueError(f"build record: missing field(s) {sorted(missing)}")
        return cls(
            toolchain=str(raw["toolchain"]),
            mathlib_rev=str(raw["mathlib_rev"]),
            date=str(raw["date"]),
            build_ok=bool(raw["build_ok"]),
            axioms={str(k): [str(a) for a in v] for k, v in raw["axioms"].items()},
            build_log_tail=str(raw.get("build_log_tail", "")),
            sources_digest=str(raw.get("sources_digest", "")),
        )


def sources_digest(root: Path | str) -> str:
    """SHA-256 over the Lean sources and the build configuration, so a record can tell whether
    it was made for the sources now in the tree."""
    r = Path(root)
    paths = sorted((r / "Proofs").rglob("*.lean")) + [r / "Proofs.lean", r / "lakefile.lean", r / "lean-toolchain"]
    h = hashlib.sha256()
    for p in paths:
        if p.exists():
            h.update(p.relative_to(r).as_posix().encode())
            h.update(b"\0")
            h.update(p.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


def load_record(path: Path | str = DEFAULT_RECORD) -> BuildRecord | None:
    p = Path(path)
    if not p.exists():
        return None
    return BuildRecord.from_json(p.read_text(encoding="utf-8"))


_AXIOMS_RE = re.compile(
    r"'(?P<name>[^']+)' depends on axioms: \[(?P<axioms>[^\]]*)\]"
    r"|'(?P<none>[^']+)' does not depend on any axioms",
    re.S,
)


def parse_print_axioms(output: str) -> dict[str, list[str]]:
    """Parse the messages of ``#print axioms`` into ``{declaration: [axiom, …]}``.

    Lean prints either ``'X' depends on axioms: [a, b, …]`` (possibly wrapped over lines) or
    ``'X' does not depend on any axioms``.
    """
    result: dict[str, list[str]] = {}
    for m in _AXIOMS_RE.finditer(output):
        if m.group("none"):
            result[m.group("none")] = []
        else:
            axioms = [a.strip() for a in m.group("axioms").replace("\n", " ").split(",") if a.strip()]
            result[m.group("name")] = sorted(axioms)
    return result


def parse_manifest_rev(manifest_text: str, package: str = "mathlib") -> str:
    """The git revision of ``package`` recorded in ``lake-manifest.json``."""
    manifest = json.loads(manifest_text)
    for pkg in manifest.get("packages", []):
        if pkg.get("name") == package:
            return str(pkg.get("rev", "unknown"))
    return "unknown"


def axiom_problems(registry: Registry, record: BuildRecord) -> list[str]:
    """Failures a build record shows for the registry: a failed build, a proven declaration
    with no axiom report, or with `sorryAx` / a non-standard axiom."""
    problems: list[str] = []
    if not record.build_ok:
        problems.append(f"lake build failed ({record.date})")
    for thm in registry:
        if thm.lean is None or thm.status != "proven":
            continue
        axioms = record.axioms.get(thm.lean.decl)
        if axioms is None:
            problems.append(f"{thm.name}: no #print axioms result for {thm.lean.decl}")
            continue
        bad = [a for a in axioms if a not in STANDARD_AXIOMS]
        if bad:
            problems.append(f"{thm.name}: {thm.lean.decl} depends on {', '.join(bad)}")
    return problems


def write_record_atomically(record: BuildRecord, path: Path | str) -> None:
    write_text_atomically(path, record.to_json())


def run_lean_check(root: Path, registry: Registry, record_path: Path = DEFAULT_RECORD,
                   timeout: float = 6 * 3600) -> tuple[BuildRecord, list[str]]:
    """Build with lake, print axioms of every registered declaration, write the record."""
    lake = shutil.which("lake")
    if lake is None:
        raise LeanToolchainMissing(
            "`lake` is not on PATH: no Lean toolchain is installed here, so the proofs cannot be "
            "machine-checked on this machine. Install elan (https://github.com/leanprover/elan), "
            "then run `lake exe cache get && lake build` and `betaspec lean-check` again."
        )
    build = subprocess.run([lake, "build"], cwd=root, capture_output=True, text=True, timeout=timeout)
    log = (build.stdout + build.stderr)[-4000:]
    axioms: dict[str, list[str]] = {}
    if build.returncode == 0:
        decls = [t.lean.decl for t in registry if t.lean is not None]
        script = "import Proofs\n" + "".join(f"#print axioms {d}\n" for d in decls)
        with tempfile.NamedTemporaryFile("w", suffix=".lean", dir=root, delete=False, encoding="utf-8") as fh:
            fh.write(script)
            script_path = fh.name
        try:
            out = subprocess.run([lake, "env", "lean", script_path], cwd=root, capture_output=True,
                                 text=True, timeout=timeout)
        finally:
            os.unlink(script_path)
        axioms = parse_print_axioms(out.stdout + out.stderr)
        if out.returncode != 0:
            log += "\n#print axioms failed:\n" + (out.stdout + out.stderr)[-2000:]
    toolchain = (root / "lean-toolchain").read_text(encoding="utf-8").strip()
    manifest = root / "lake-manifest.json"
    rev = parse_manifest_rev(manifest.read_text(encoding="utf-8")) if manifest.exists() else "unknown"
    record = BuildRecord(
        toolchain=toolchain,
        mathlib_rev=rev,
        date=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        build_ok=build.returncode == 0,
        axioms=axioms,
        build_log_tail=log,
        sources_digest=sources_digest(root),
    )
    write_record_atomically(record, record_path)
    return record, axiom_problems(registry, record)

"""Show, and with --accept write, what the generator now makes of each golden case.

    python scripts/update_golden.py [--accept] [CASE ...]

For each tests/golden/<case>/ (all, or the named ones) the case's input is
generated in a temp root and compared with its expected/ folder: every file
that differs, is new or is gone is printed as a unified diff. Nothing is
written unless --accept is given; then expected/ becomes exactly the new
output. Review the printed diff (and, after accepting, the diff of
tests/golden/) like any other code change: the golden files are the contract.

Exit status: 0 when nothing differs (or --accept wrote it), 1 when something
differs and was not accepted, 2 when a case's input does not generate.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cdc_generator import generate
from cdc_generator.errors import CdcError, ConfigError
from cdc_generator.report import problems_text

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*")) if p.is_file()}


def case_diff(case: Path, produced: dict[str, str]) -> str:
    """The unified diff from the case's expected/ to `produced`."""
    expected = tree(case / "expected") if (case / "expected").is_dir() else {}
    shown = f"{case.parent.name}/{case.name}/expected"
    chunks: list[str] = []
    for path in sorted(expected.keys() | produced.keys()):
        old, new = expected.get(path), produced.get(path)
        if old == new:
            continue
        chunks.extend(difflib.unified_diff(
            (old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True),
            f"a/{shown}/{path}" if old is not None else "/dev/null",
            f"b/{shown}/{path}" if new is not None else "/dev/null"))
    return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)


def update(case: Path, *, accept: bool) -> int:
    """Print the case's diff; write it with `accept`. The exit status of the case."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(case / "input", root)
        try:
            generate.generate(root, generate.Selection())
        except CdcError as exc:
            why = problems_text(exc.problems) if isinstance(exc, ConfigError) else f"{exc}\n"
            print(f"{case.name}: the input does not generate:\n{why}", end="", file=sys.stderr)
            return 2
        diff = case_diff(case, tree(root / "generated"))
        if not diff:
            print(f"{case.name}: unchanged", file=sys.stderr)
            return 0
        sys.stdout.write(diff)
        if not accept:
            print(f"{case.name}: differs (not written; --accept writes it)", file=sys.stderr)
            return 1
        shutil.rmtree(case / "expected", ignore_errors=True)
        shutil.copytree(root / "generated", case / "expected")
        print(f"{case.name}: written", file=sys.stderr)
        return 0


def main(argv: Sequence[str] | None = None, golden: Path = GOLDEN) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--accept", action="store_true", help="write the new expected output")
    parser.add_argument("cases", nargs="*", metavar="CASE", help="only these cases")
    args = parser.parse_args(argv)
    known = sorted(p.name for p in golden.iterdir() if (p / "input").is_dir())
    unknown = sorted(set(args.cases) - set(known))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return max((update(golden / name, accept=args.accept) for name in args.cases or known),
               default=0)


if __name__ == "__main__":
    sys.exit(main())

"""How fast `generate` is against the I/O floor, for growing synthetic estates.

    python benchmarks/bench_generate.py [--sizes 50,500,5000] [--tables 20]
                                        [--environments 3] [--repeat 3]

For each size a synthetic estate (benchmarks/synth.py) is written into a temp
root and measured, each run a fresh `python -m cdc_generator` subprocess so
that peak RSS (ru_maxrss from os.wait4) belongs to that run alone:

* cold       `generate` into a root without generated/
* unchanged  `generate` again with nothing changed (must write nothing)
* check      `generate --check`
* floor      writing the same bytes from in-memory strings into an empty tree
             with the same directory layout (time of the writes alone)

Wall time is the best of --repeat runs. `--help` and `validate` are timed on
this repository. Prints figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in {None, ""}:  # run as a script: make `benchmarks.synth` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import synth

REPO = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_kb: int
    returncode: int
    stdout: str
    stderr: str


def run(argv: list[str], cwd: Path | None = None) -> Run:
    """Run `argv` to completion; wall time and the child's own peak RSS."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(seconds, usage.ru_maxrss, proc.returncode,
                   out.read().decode(), err.read().decode())


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cdc_generator", *args]


def best(runs: list[Run]) -> Run:
    failed = [r for r in runs if r.returncode != 0]
    if failed:
        raise SystemExit(f"benchmark run failed ({failed[0].returncode}):\n{failed[0].stderr}")
    return min(runs, key=lambda r: r.seconds)


def tree_stats(directory: Path) -> tuple[int, int]:
    count = size = 0
    for dirpath, _dirs, names in os.walk(directory):
        for name in names:
            count += 1
            size += os.path.getsize(os.path.join(dirpath, name))
    return count, size


def tree_identity(directory: Path) -> dict[str, tuple[int, int]]:
    """inode and mtime of every file: an untouched tree keeps both."""
    out = {}
    for dirpath, _dirs, names in os.walk(directory):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.join(dirpath, name)] = (st.st_ino, st.st_mtime_ns)
    return out


# ------------------------------------------------------------- the I/O floor


def floor_child(source: Path, dest: Path) -> None:
    """Load `source` into memory (untimed), then write it under `dest`; print seconds."""
    base = len(str(source)) + 1
    files: list[tuple[str, bytes]] = []
    for dirpath, _dirs, names in os.walk(source):
        for name in names:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as fh:
                files.append((full[base:], fh.read()))
    files.sort()
    started = time.perf_counter()
    made: set[str] = set()
    for rel, data in files:
        parent = os.path.dirname(rel)
        if parent not in made:
            os.makedirs(os.path.join(dest, parent), exist_ok=True)
            made.add(parent)
        with open(os.path.join(dest, rel), "wb") as fh:
            fh.write(data)
    print(f"{time.perf_counter() - started:.6f}")


def floor(source: Path, scratch: Path, repeat: int) -> Run:
    runs = []
    for _ in range(repeat):
        shutil.rmtree(scratch, ignore_errors=True)
        child = run([sys.executable, __file__, "--floor-child", str(source), str(scratch)])
        if child.returncode != 0:
            raise SystemExit(f"floor run failed:\n{child.stderr}")
        runs.append(Run(float(child.stdout), child.max_rss_kb, 0, "", ""))
    shutil.rmtree(scratch, ignore_errors=True)
    return best(runs)


# ------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Row:
    size: str
    what: str
    run: Run
    files: int
    size_bytes: int
    floor: float
    note: str = ""

    def cells(self) -> list[str]:
        s = self.run.seconds
        return [
            self.size, self.what, f"{s:.3f}", f"{self.files / s:,.0f}",
            f"{self.size_bytes / MB / s:.1f}", f"{self.run.max_rss_kb / 1024:.0f}",
            f"{s / self.floor:.1f}x" if self.floor else "-", self.note,
        ]


HEADER = ["estate", "run", "wall s", "files/s", "MB/s", "peak MB", "x floor", "note"]


def measure_size(tenants: int, tables: int, environments: int, repeat: int) -> list[Row]:
    estate = synth.Estate(tenants=tenants, tables=tables,
                          environments=synth.environment_names(environments))
    label = f"{tenants}x{tables}x{environments}"
    with tempfile.TemporaryDirectory(prefix="cdc-bench-") as tmp:
        root = Path(tmp) / "repo"
        synth.write(root, estate)
        generated = root / "generated"
        generate = cli("generate", "--root", str(root))

        cold_runs = []
        for _ in range(repeat):
            shutil.rmtree(generated, ignore_errors=True)
            cold_runs.append(run(generate))
        cold = best(cold_runs)
        files, size = tree_stats(generated)
        if files != synth.expected_files(estate):
            raise SystemExit(f"{label}: {files} files, expected {synth.expected_files(estate)}")

        before = tree_identity(generated)
        unchanged = best([run(generate) for _ in range(repeat)])
        untouched = tree_identity(generated) == before
        said = "nothing written" in unchanged.stderr
        check = best([run(cli("generate", "--root", str(root), "--check", "--no-diff"))
                      for _ in range(repeat)])
        io_floor = floor(generated, Path(tmp) / "floor", repeat)

    f = io_floor.seconds
    return [
        Row(label, "cold", cold, files, size, f, f"{files} files, {size / MB:.1f} MB"),
        Row(label, "unchanged", unchanged, files, size, f,
            ("says nothing written" if said else "DID NOT SAY nothing written")
            + (", tree untouched" if untouched else ", TREE TOUCHED")),
        Row(label, "check", check, files, size, f),
        Row(label, "floor", io_floor, files, size, f, "writes only, in-process"),
    ]


def measure_startup(repeat: int) -> list[list[str]]:
    out = []
    for what, argv in (("--help", cli("--help")),
                       ("validate", cli("validate", "--root", str(REPO)))):
        runs = [run(argv, cwd=REPO) for _ in range(max(repeat, 5))]
        if any(r.returncode for r in runs):
            out.append([what, "failed", "", "", runs[0].stderr.strip()[:60]])
            continue
        secs = [r.seconds for r in runs]
        out.append([what, f"{min(secs):.3f}", f"{statistics.median(secs):.3f}",
                    f"{max(r.max_rss_kb for r in runs) / 1024:.0f}",
                    runs[0].stderr.strip().splitlines()[-1][:60] if runs[0].stderr else ""])
    return out


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--sizes", default="50,500,5000", help="tenant counts (default: %(default)s)")
    parser.add_argument("--tables", type=int, default=20)
    parser.add_argument("--environments", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; best is kept")
    parser.add_argument("--floor-child", nargs=2, metavar=("SRC", "DEST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_child:
        floor_child(Path(args.floor_child[0]), Path(args.floor_child[1]))
        return 0

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, best of {args.repeat}",
          flush=True)
    rows: list[Row] = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += measure_size(size, args.tables, args.environments, args.repeat)
        print(table(HEADER, [r.cells() for r in rows]) + "\n", flush=True)

    colds = [r for r in rows if r.what == "cold"]
    if len(colds) > 1:
        per_file = [r.run.seconds / r.files * 1e3 for r in colds]
        print("cold ms per file: " + ", ".join(
            f"{r.size}: {ms:.3f}" for r, ms in zip(colds, per_file, strict=True))
            + f"; largest/smallest: {per_file[-1] / per_file[0]:.2f}")
        print()
    print("startup on this repository")
    print(table(["command", "best s", "median s", "peak MB", "says"], measure_startup(args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

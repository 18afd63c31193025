"""How fast `generate` is against the I/O floor, for growing synthetic estates.

    python benchmarks/bench_generate.py [--sizes 1,50,500,5000] [--tables 20]
                                        [--environments 3] [--repeat 3] [--tmpdir DIR]

For each size a synthetic estate (benchmarks/synth.py) is written into a temp
root and measured, each run a fresh `python -m cdc_generator` subprocess that
reports its own peak RSS (VmHWM) at exit:

* cold       `generate` into a root without generated/ (a fresh root per run)
* unchanged  `generate` again with nothing changed (must write nothing)
* check      `generate --check`
* floor      writing the same bytes from in-memory strings into an empty tree
             with the same directory layout (time of the writes alone)

The 1-tenant estate shows a run's fixed cost (interpreter, imports, templates);
the marginal cost per file between sizes shows the part that grows with the
estate. Wall and CPU time are of the best of --repeat runs. The package's modules are
byte-compiled first, as `pip install` does (a checkout run with
PYTHONDONTWRITEBYTECODE=1 would otherwise re-compile them on every run).
`--help` and `validate` are timed on this repository. `--tmpdir /dev/shm` takes
the disk out of the figures. Prints figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import itertools
import os
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
    cpu_seconds: float  # user + system
    max_rss_kb: int
    returncode: int
    stdout: str
    stderr: str


# ru_maxrss of a child also counts the parent's memory it was forked from, so
# each child reports the high-water mark of its own address space (VmHWM) itself.
# generate's worker processes (forked, leaving through os._exit) report theirs
# into <file>.<pid>; the figure is the sum over all processes, an upper bound
# (pages shared after fork count once per process).
_HWM_ENV = "CDC_BENCH_HWM_FILE"
_REPORT_HWM = f"""
import atexit, os
def _hwm(path):
    with open("/proc/self/status") as status, open(path, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
_main, _real_exit = os.getpid(), os._exit
def _exit(code):
    if os.getpid() != _main:
        _hwm(os.environ["{_HWM_ENV}"] + "." + str(os.getpid()))
    _real_exit(code)
os._exit = _exit
atexit.register(lambda: _hwm(os.environ["{_HWM_ENV}"]))
"""


def _peak_kb(hwm_file: str, fallback: int) -> int:
    """The main process's VmHWM plus every worker's."""
    total = 0
    main = Path(hwm_file)
    for path in [main, *main.parent.glob(main.name + ".*")]:
        text = path.read_text().strip()
        total += int(text or 0)
        if path != main:
            path.unlink()
    return total or fallback


def run(argv: list[str], cwd: Path | None = None) -> Run:
    """Run `argv` to completion; wall time, CPU time and the child's own peak RSS.
    Dirty pages of earlier runs are flushed first, so no run pays for another's."""
    os.sync()
    with (tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err,
          tempfile.NamedTemporaryFile("r") as hwm):
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err,
                                env={**os.environ, _HWM_ENV: hwm.name})
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        peak_kb = _peak_kb(hwm.name, usage.ru_maxrss)
        return Run(seconds, usage.ru_utime + usage.ru_stime, peak_kb, proc.returncode,
                   out.read().decode(), err.read().decode())


def cli(*args: str) -> list[str]:
    """`python -m cdc_generator ARGS`, plus the peak-memory report at exit."""
    return [sys.executable, "-c", _REPORT_HWM + "import runpy\n"
            "runpy.run_module('cdc_generator', run_name='__main__', alter_sys=True)", *args]


def compile_package() -> None:
    """Byte-compile cdc_generator as `pip install` would: what a user's runs import."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("cdc_generator")
    if spec is None or spec.origin is None:
        raise SystemExit("cdc_generator is not importable: pip install -e . first")
    if not compileall.compile_dir(os.path.dirname(spec.origin), quiet=1):
        raise SystemExit("byte-compiling cdc_generator failed")


def best(runs: list[Run]) -> Run:
    failed = [r for r in runs if r.returncode != 0]
    if failed:
        raise SystemExit(f"benchmark run failed ({failed[0].returncode}):\n{failed[0].stderr}")
    return min(runs, key=lambda r: r.seconds)


@dataclass(frozen=True)
class Spread:
    """Fastest and slowest of a measurement's runs: how steady the machine (and
    its disk) was."""

    fastest: float
    slowest: float

    @classmethod
    def of(cls, runs: list[Run]) -> Spread:
        secs = [r.seconds for r in runs]
        return cls(min(secs), max(secs))

    @property
    def ratio(self) -> float:
        return self.slowest / self.fastest

    def __str__(self) -> str:
        return f"{self.fastest:.3f}-{self.slowest:.3f} s"


# Above this slowest/fastest ratio among a size's cold or floor runs, the machine
# (usually the disk: ext4 after large deletions) changed speed under the runs, and
# the ratio to the floor says more about that than about generate.
UNSTEADY = 1.5


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
    cpu_started = sum(os.times()[:2])
    started = time.perf_counter()
    made: set[str] = set()
    for rel, data in files:
        parent = os.path.dirname(rel)
        if parent not in made:
            os.makedirs(os.path.join(dest, parent), exist_ok=True)
            made.add(parent)
        with open(os.path.join(dest, rel), "wb") as fh:
            fh.write(data)
    cpu = sum(os.times()[:2])
    print(f"{time.perf_counter() - started:.6f} {cpu - cpu_started:.6f}")


def floor(source: Path, dest: Path) -> Run:
    child = run([sys.executable, "-c", _REPORT_HWM + "import runpy, sys\n"
                 f"sys.argv[0] = {__file__!r}\n"
                 f"runpy.run_path({__file__!r}, run_name='__main__')",
                 "--floor-child", str(source), str(dest)])
    if child.returncode != 0:
        raise SystemExit(f"floor run failed:\n{child.stderr}")
    seconds, cpu = (float(x) for x in child.stdout.split())
    return Run(seconds, cpu, child.max_rss_kb, 0, "", "")


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
    wrote_nothing: bool = True  # unchanged runs: said so, and left every file alone
    spread: Spread | None = None  # of the runs, where several were kept apart

    def cells(self) -> list[str]:
        s = self.run.seconds
        return [
            self.size, self.what, f"{s:.3f}", f"{self.run.cpu_seconds:.3f}",
            f"{self.files / s:,.0f}",
            f"{self.size_bytes / MB / s:.1f}", f"{self.run.max_rss_kb / 1024:.0f}",
            f"{s / self.floor:.1f}x" if self.floor else "-", self.note,
        ]


HEADER = ["estate", "run", "wall s", "cpu s", "files/s", "MB/s", "peak MB", "x floor", "note"]
# peak MB: summed over generate's processes (see _REPORT_HWM)


def measure_size(tenants: int, tables: int, environments: int, repeat: int,
                 tmpdir: str | None) -> list[Row]:
    estate = synth.Estate(tenants=tenants, tables=tables,
                          environments=synth.environment_names(environments))
    label = f"{tenants}x{tables}x{environments}"
    with tempfile.TemporaryDirectory(prefix="cdc-bench-", dir=tmpdir) as tmp:
        # Every cold run and every floor run gets a fresh directory, and nothing is
        # deleted until the end: ext4 skips inodes freed in the last ~30 s when it
        # allocates new ones, so deleting a large tree slows the next creations.
        # Cold runs and floor runs alternate, so both meet the same disk weather.
        cold_runs, floor_runs = [], []
        for i in range(repeat):
            root = Path(tmp) / f"repo-{i}"
            synth.write(root, estate)
            cold_runs.append(run(cli("generate", "--root", str(root))))
            floor_runs.append(floor(root / "generated", Path(tmp) / f"floor-{i}"))
        cold, io_floor = best(cold_runs), best(floor_runs)
        generated = root / "generated"
        files, size = tree_stats(generated)

        before = tree_identity(generated)
        unchanged = best([run(cli("generate", "--root", str(root))) for _ in range(repeat)])
        untouched = tree_identity(generated) == before
        said = "nothing written" in unchanged.stderr
        check = best([run(cli("generate", "--root", str(root), "--check", "--no-diff"))
                      for _ in range(repeat)])

    f = io_floor.seconds
    return [
        Row(label, "cold", cold, files, size, f,
            f"{files} files, {size / MB:.1f} MB; runs {Spread.of(cold_runs)}",
            spread=Spread.of(cold_runs)),
        Row(label, "unchanged", unchanged, files, size, f,
            ("says nothing written" if said else "DID NOT SAY nothing written")
            + (", tree untouched" if untouched else ", TREE TOUCHED"),
            wrote_nothing=said and untouched),
        Row(label, "check", check, files, size, f),
        Row(label, "floor", io_floor, files, size, f,
            f"writes only, in-process; runs {Spread.of(floor_runs)}",
            spread=Spread.of(floor_runs)),
    ]


def measure_startup(repeat: int) -> dict[str, list[Run]]:
    out = {}
    for what, argv in (("--help", cli("--help")),
                       ("validate", cli("validate", "--root", str(REPO)))):
        out[what] = [run(argv, cwd=REPO) for _ in range(max(repeat, 5))]
    return out


def startup_rows(startup: dict[str, list[Run]]) -> list[list[str]]:
    out = []
    for what, runs in startup.items():
        if any(r.returncode for r in runs):
            out.append([what, "failed", "", "", runs[0].stderr.strip()[:60]])
            continue
        secs = [r.seconds for r in runs]
        out.append([what, f"{min(secs):.3f}", f"{statistics.median(secs):.3f}",
                    f"{max(r.max_rss_kb for r in runs) / 1024:.0f}",
                    runs[0].stderr.strip().splitlines()[-1][:60] if runs[0].stderr else ""])
    return out


def target_rows(rows: list[Row], startup: dict[str, list[Run]]) -> list[list[str]]:
    """Issue 6's targets against the figures above: [target, measured, met]."""
    out: list[list[str]] = []

    def add(target: str, measured: str, met: bool) -> None:
        out.append([target, measured, "yes" if met else "NO"])

    by = {(r.size, r.what): r for r in rows}
    big = next((r.size for r in rows if r.size.startswith("500x")), None)
    if big is not None:
        cold, unchanged, check = by[big, "cold"], by[big, "unchanged"], by[big, "check"]
        add(f"{big} generate < 2 s", f"{cold.run.seconds:.3f} s", cold.run.seconds < 2)
        ratio = cold.run.seconds / cold.floor
        varied = max(r.spread.ratio for r in (cold, by[big, "floor"]) if r.spread)
        if varied > UNSTEADY:
            out.append([f"{big} generate within 2.5x of the I/O floor",
                        f"{ratio:.1f}x, but runs varied up to {varied:.1f}x",
                        "UNSURE: re-run, or --tmpdir /dev/shm"])
        else:
            add(f"{big} generate within 2.5x of the I/O floor", f"{ratio:.1f}x", ratio <= 2.5)
        add(f"{big} unchanged re-run writes nothing and says so", unchanged.note,
            unchanged.wrote_nothing)
        add(f"{big} unchanged re-run faster than generate",
            f"{unchanged.run.seconds:.3f} s vs {cold.run.seconds:.3f} s",
            unchanged.run.seconds < cold.run.seconds)
        add(f"{big} --check < 2 s", f"{check.run.seconds:.3f} s", check.run.seconds < 2)
    colds = [r for r in rows if r.what == "cold"]
    small = next((r for r in colds if r.size.startswith("50x")), None)
    huge = next((r for r in colds if r.size.startswith("5000x")), None)
    if small is not None and huge is not None:
        growth = (huge.run.seconds / huge.files) / (small.run.seconds / small.files)
        add("time per file at 5000 tenants <= 1.5x that at 50", f"{growth:.2f}x", growth <= 1.5)
    if huge is not None:
        peak = max(r.run.max_rss_kb for r in rows if r.size == huge.size
                   and r.what != "floor") / 1024
        add("peak memory at 5000 tenants < 300 MB", f"{peak:.0f} MB", peak < 300)
    for what, runs in startup.items():
        if all(r.returncode == 0 for r in runs):
            median = statistics.median(r.seconds for r in runs)
            add(f"{what} on this repository < 0.3 s (median)", f"{median:.3f} s", median < 0.3)
    return out


def fixed_cost(rows: list[Row]) -> str:
    """What a run costs before the estate's size matters (a 1-tenant estate's
    cold generate: interpreter, imports, templates), against the 2.5x budget."""
    by = {(r.size, r.what): r for r in rows}
    one = next((r.size for r in rows if r.size.startswith("1x")), None)
    big = next((r.size for r in rows if r.size.startswith("500x")), None)
    if one is None or big is None:
        return ""
    fixed, budget = by[one, "cold"].run.seconds, 2.5 * by[big, "floor"].run.seconds
    return (f"fixed cost of a run ({one} cold generate, {by[one, 'cold'].files} files): "
            f"{fixed:.3f} s = {fixed / budget:.0%} of 2.5x the {big} floor ({budget:.3f} s)")


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [header, ["-" * w for w in widths], *rows]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--sizes", default="1,50,500,5000",
                        help="tenant counts (default: %(default)s)")
    parser.add_argument("--tables", type=int, default=20)
    parser.add_argument("--environments", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; best is kept")
    parser.add_argument("--tmpdir", help="where the estates are built (default: the system's)")
    parser.add_argument("--floor-child", nargs=2, metavar=("SRC", "DEST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor_child:
        floor_child(Path(args.floor_child[0]), Path(args.floor_child[1]))
        return 0

    where = args.tmpdir or tempfile.gettempdir()
    compile_package()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, best of {args.repeat}, "
          f"estates under {where}", flush=True)
    rows: list[Row] = []
    for size in (int(s) for s in args.sizes.split(",")):
        rows += measure_size(size, args.tables, args.environments, args.repeat, args.tmpdir)
        print(table(HEADER, [r.cells() for r in rows]) + "\n", flush=True)

    colds = [r for r in rows if r.what == "cold"]
    if len(colds) > 1:
        per_file = [r.run.seconds / r.files * 1e3 for r in colds]
        print("cold ms per file: " + ", ".join(
            f"{r.size}: {ms:.3f}" for r, ms in zip(colds, per_file, strict=True))
            + f"; largest/smallest: {per_file[-1] / per_file[0]:.2f}")
        # what each further file costs, against what writing it costs: the part of
        # the time that grows with the estate, without the fixed start-up cost
        floors = {r.size: r for r in rows if r.what == "floor"}
        for a, b in itertools.pairwise(colds):
            files = b.files - a.files
            cost = (b.run.seconds - a.run.seconds) / files * 1e6
            floor_cost = (floors[b.size].run.seconds - floors[a.size].run.seconds) / files * 1e6
            print(f"marginal per file {a.size} -> {b.size}: generate {cost:.1f} us, "
                  f"floor {floor_cost:.1f} us ({cost / floor_cost:.1f}x)")
        print()
    startup = measure_startup(args.repeat)
    print("startup on this repository")
    print(table(["command", "best s", "median s", "peak MB", "says"], startup_rows(startup)))
    print()
    print("targets (issue 6)")
    print(table(["target", "measured", "met"], target_rows(rows, startup)))
    print(fixed_cost(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

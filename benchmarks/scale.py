"""Scale targets of issue 21, printed side by side in one run.

1. Memory and reports: `verify run --examples N --jobs J` for each N of --sizes, in a child
   process whose tree (the command and its workers) is sampled from /proc every 0.1 s: the peak
   resident memory of the whole tree and of the command alone, the sweep's wall time, the time
   the command spent recording results as they came (verify.report.stream.Recorder.add, in the
   command's process, beside the workers' checking) and writing the reports at the end, and the
   size of each report file. Target: peak < 2 GB, flat in N; report time < 10% of the sweep's.
2. Parallel speed-up: the whole run (sweep and reports, imports aside) of --speedup-examples
   cases in one process and in J, beside a plain CPU-bound loop's speed-up in J processes now
   (benchmarks/throughput.py's yardstick: a shared machine may give less than J cores).
   Target: >= 0.8 J where the yardstick gets J.
3. Big networks: verify.check of 784-512-512-10 at batch 256 and of 1024-4096-10 at batch 64
   over handimpl's forward and backward plus torch's (target <= 2x), then the log-log slope of
   verify.check's cost and of that computation's cost against width, depth and batch.

    python benchmarks/scale.py [--sizes 10000,100000] [--jobs 2] [--speedup-examples 2000]
                               [--skip memory,speedup,big]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")
BIG = [("784-512-512-10:relu,relu,identity:cross_entropy", 256),
       ("1024-4096-10:relu,identity:cross_entropy", 64)]


# -- 1. memory and reports ---------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def tree_rss(root: int, cpu: dict[int, float] | None = None) -> tuple[int, int]:
    """(resident bytes of ``root`` and all its descendants, of ``root`` alone); ``cpu`` gets
    each descendant's CPU seconds as last seen."""
    tree, todo, total = _children(), [root], 0
    while todo:
        pid = todo.pop()
        total += _rss(pid)
        if cpu is not None and pid != root:
            cpu[pid] = max(cpu.get(pid, 0.0), _cpu(pid))
        todo += tree.get(pid, [])
    return total, _rss(root)


CHILD = """
import json, sys, time
from verify.report import stream, write
spent = {"record_s": 0.0, "write_s": 0.0}
add = stream.Recorder.add
def timed_add(self, *a, **k):
    t = time.thread_time(); add(self, *a, **k); spent["record_s"] += time.thread_time() - t
stream.Recorder.add = timed_add
_write = write._write
def timed_write(*a, **k):
    t = time.thread_time(); out = _write(*a, **k); spent["write_s"] += time.thread_time() - t; return out
write._write = timed_write
from verify.cli.app import main
code = main(sys.argv[1:])
print("SCALE " + json.dumps(spent), flush=True)
sys.exit(code)
"""


def run_sized(n: int, jobs: int, seed: int, extra: list[str]) -> dict:
    """One `verify run` of ``n`` cases in a child process, sampled for memory."""
    out = Path(tempfile.mkdtemp(prefix="scale-")) / "report"
    cmd = [sys.executable, "-c", CHILD, "run", "--examples", str(n), "--jobs", str(jobs), "--seed", str(seed),
           "--out", str(out), *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=out.parent)
    peak = [0, 0]
    cpu: dict[int, float] = {}

    def sample():
        while proc.poll() is None:
            total, own = tree_rss(proc.pid, cpu)
            peak[0], peak[1] = max(peak[0], total), max(peak[1], own)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = proc.communicate()
    elapsed = time.perf_counter() - start
    sampler.join()
    spent = json.loads(next(line for line in stdout.splitlines() if line.startswith("SCALE "))[6:])
    report = json.loads((out / "report.json").read_text())
    sizes = {p.name: p.stat().st_size for p in out.iterdir()}
    return {"n": n, "peak": peak[0], "parent_peak": peak[1], "elapsed": elapsed, "sweep": report["wall_time_s"],
            "workers_cpu": sum(cpu.values()),
            **spent, "sizes": sizes, "keep": report["discrepancies"]["keep"], "code": proc.returncode,
            "out": out}


def mb(b: float) -> str:
    return f"{b / 2**20:,.0f} MB" if b >= 2**20 else f"{b / 2**10:,.0f} KB"


def memory_section(sizes: list[int], jobs: int, seed: int, extra: list[str]) -> None:
    print(f"== 1. memory and reports: verify run --examples N --jobs {jobs} --seed {seed} {' '.join(extra)}")
    print(f"{'N':>9} {'peak tree':>10} {'peak cmd':>9} {'sweep s':>8} {'check cpu':>9} {'record cpu':>10} "
          f"{'write cpu':>9} {'report/check':>12} {'disc.csv':>9} {'cases.csv':>9} {'html':>8} keep")
    for n in sizes:
        r = run_sized(n, jobs, seed, extra)
        s = r["sizes"]
        share = (r["record_s"] + r["write_s"]) / r["workers_cpu"]
        print(f"{n:>9,} {mb(r['peak']):>10} {mb(r['parent_peak']):>9} {r['sweep']:8.1f} {r['workers_cpu']:9.1f} "
              f"{r['record_s']:10.1f} {r['write_s']:9.2f} {share:11.1%} {mb(s['discrepancies.csv']):>9} "
              f"{mb(s['cases.csv']):>9} {mb(s['report.html']):>8} {r['keep']}  "
              f"(exit {r['code']}, {r['elapsed']:.0f} s in all)")
    print("  target: peak < 2 GB and flat in N; report < 10% of the single-process sweep; report.html < 5 MB.\n"
          "  check cpu: the workers' CPU seconds (what one process would spend checking); record cpu: the\n"
          "  command's CPU seconds taking each result as it came (rows, tallies); write cpu: the reports at\n"
          "  the end (CPU times, so that a busy machine does not inflate them)")


# -- 2. parallel speed-up ----------------------------------------------------------------------

def speedup_section(n: int, jobs: int, seed: int) -> None:
    from throughput import time_machine
    print(f"== 2. parallel speed-up: verify run --examples {n}, whole run (sweep + reports, imports aside)")
    runs = {}
    for j in (1, jobs):
        r = run_sized(n, j, seed, [])
        runs[j] = r["sweep"] + r["write_s"]
        print(f"  --jobs {j}: {runs[j]:.1f} s (sweep {r['sweep']:.1f} s, final write {r['write_s']:.2f} s)")
    machine = time_machine(jobs)
    print(f"  speed-up {runs[1] / runs[jobs]:.2f} with {jobs} processes (target {0.8 * jobs:.1f}); "
          f"a plain CPU-bound loop gets {machine:.2f} from {jobs} processes on this machine now")


# -- 3. big networks ---------------------------------------------------------------------------

def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def costs(spec_text: str, batch: int, repeat: int = 3) -> tuple[float, float, float]:
    """(verify.check, handimpl's forward and backward, torch's) in CPU seconds (one thread),
    best of ``repeat``."""
    from throughput import twin_backward

    import handimpl
    import verify
    from verify.core.data import draw_case
    from verify.core.spec import NetSpec
    spec = NetSpec.parse(spec_text)
    case = draw_case(spec, 0, batch)
    check = _best(lambda: verify.check(spec_text, seed=0, batch=batch), repeat)
    hand = _best(lambda: handimpl.backprop(spec, case.params, case.x, case.y), repeat)
    torch_t = _best(lambda: twin_backward(spec, case), repeat)
    return check, hand, torch_t


def _slope(xs, ys) -> float:
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def big_section() -> None:
    import torch
    torch.set_num_threads(1)
    print("== 3. big networks (one thread): verify.check against handimpl's + torch's forward and backward")
    for spec, batch in BIG:
        check, hand, torch_t = costs(spec, batch)
        print(f"  {spec} batch {batch}: check {check * 1e3:.0f} ms, handimpl {hand * 1e3:.0f} ms, "
              f"torch {torch_t * 1e3:.0f} ms: ratio {check / (hand + torch_t):.2f} (target <= 2)")
    sweeps = {"width": [(f"64-{w}-{w}-10:relu,relu,identity:cross_entropy", 64, w) for w in (64, 128, 256, 512)],
              "depth": [("64-" + "-".join(["256"] * d) + "-10:" + ",".join(["relu"] * d) + ",identity:cross_entropy",
                         64, d) for d in (1, 2, 4, 8)],
              "batch": [("64-256-256-10:relu,relu,identity:cross_entropy", b, b) for b in (16, 64, 256, 1024)]}
    for name, points in sweeps.items():
        xs, check_s, comp_s = [], [], []
        for spec, batch, x in points:
            check, hand, torch_t = costs(spec, batch)
            xs.append(x)
            check_s.append(check)
            comp_s.append(hand + torch_t)
        ratios = " ".join(f"{c / k:.2f}" for c, k in zip(check_s, comp_s))
        print(f"  {name} {xs}: log-log slope of verify.check {_slope(xs, check_s):.2f}, of the computation "
              f"{_slope(xs, comp_s):.2f}; ratios {ratios}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000", help="N of section 1, comma-separated")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--speedup-examples", type=int, default=2000)
    p.add_argument("--run-args", default="", help="more options of verify run for section 1, e.g. "
                   "'--architectures stack' or '--max-depth 2 --max-width 4 --max-batch 4'")
    p.add_argument("--skip", default="", help="sections to skip: memory, speedup, big")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    skip = set(filter(None, args.skip.split(",")))
    print(f"load: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if "memory" not in skip:
        extra = args.run_args.split()
        memory_section([int(n) for n in args.sizes.split(",")], args.jobs, args.seed, extra)
    if "speedup" not in skip:
        speedup_section(args.speedup_examples, args.jobs, args.seed)
    if "big" not in skip:
        big_section()
    print(f"load: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

"""Every analysis step at 1M, 4M and 10M trades: time, peak memory and growth (issue 18).

    flock /tmp/ledgerlens-heavy.lock .venv/bin/python benchmarks/bench_scale.py \
        [--scales 10 40 100] [--steps ingest rings features score] [--engines duckdb spark] [--rounds 1]
        [--data /work/bench-data] [--stores DIR]

Markets are the simulator's (`python -m engine synth --scale S --days 7 --seed 42`; scale 10
is about 1M trades, 40 about 4M, 100 about 10M), generated into DATA/synth-S when absent
(about 9 minutes at scale 100) and reused. Each step runs as `python -m engine <step> --db
DATA/store-S.duckdb` in a process of its own, in the order ingest (into a fresh store), rings,
features, score; its peak memory is the RSS summed over the step's process tree (sampled
every 0.1 s, so a Spark JVM counts too). Scoring needs a promoted model: one is trained once,
untimed, on a small market in DATA/home. With `--engines spark` the steps that have a Spark
engine (`<step> --engine spark`) run again on Spark local. The load average before and after
each step is printed (2 cores: other work slows a step down). All DuckDB steps of a size run
before its Spark ones. With `--rounds N` the whole run (every size, every step) is made N
times over, so the sizes alternate: the machine's speed drifts by 15-35% from hour to hour,
and a growth exponent from one pair of runs moves with it; the table then takes each
step's median time and largest peak. Before each size a fixed reference workload is timed
(`reference_seconds`, in every row): how fast the machine was then.

Results are appended to DATA/bench-scale.jsonl and printed as a Markdown table with the
growth exponents (time ~ n^a, memory ~ n^b) between consecutive sizes and first to last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("ingest", "rings", "features", "score")


def engine_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


def market(data: Path, scale: float) -> Path:
    """The simulator's market at `scale` over 7 days (generated once)."""
    folder = data / f"synth-{scale:g}"
    if not (folder / "meta.json").exists():
        subprocess.run(engine_cmd("synth", "--out", str(folder), "--scale", str(scale), "--days", "7", "--seed", "42"),
                       check=True, cwd=ROOT, env=_env(data), stdout=subprocess.DEVNULL)  # fmt: skip
    return folder


def ensure_model(data: Path) -> None:
    """A promoted model in DATA/home, trained on a small market (once, not timed)."""
    if (data / "home" / "model-ready").exists():
        return
    small = market(data, 1.0)
    db = str(data / "train.duckdb")
    for args in (("ingest", "files", str(small / "trades.jsonl"), str(small / "operations.jsonl")), ("rings",),
                 ("features",), ("train", "--labels", str(small / "labels.csv"))):  # fmt: skip
        subprocess.run(engine_cmd(*args, "--db", db), check=True, cwd=ROOT, env=_env(data), stdout=subprocess.DEVNULL)
    (data / "home" / "model-ready").write_text("ok\n")


def step_cmd(step: str, folder: Path, db: Path, engine: str) -> list[str]:
    if step == "ingest":
        return engine_cmd("ingest", "files", str(folder / "trades.jsonl"), str(folder / "operations.jsonl"),
                          "--db", str(db))  # fmt: skip
    spark = ["--engine", "spark"] if engine == "spark" else []
    return engine_cmd(step, "--db", str(db), *spark)


def measure(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) summed over the process tree of `cmd`."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(_rss(p) for p in tree))
            except psutil.NoSuchProcess:
                return
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    return seconds, peak[0] / 1e9


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.NoSuchProcess:
        return 0


def supports_spark(step: str) -> bool:
    out = subprocess.run(engine_cmd(step, "--help"), cwd=ROOT, capture_output=True, text=True).stdout
    return "--engine" in out


def _env(data: Path) -> dict:
    # Spark local runs in this process's JVM: a pair's trades are one group, held whole by the
    # JVM (the busiest pair is ~1M trades at 4M), more than the 1 GB default heap
    spark = os.environ.get("PYSPARK_SUBMIT_ARGS", "--driver-memory 6g pyspark-shell")
    return {**os.environ, "LEDGERLENS_HOME": str(data / "home"), "PYSPARK_SUBMIT_ARGS": spark}


def n_trades(folder: Path) -> int:
    return int(json.loads((folder / "meta.json").read_text())["counts"]["trades"])


def summary(rows: list[dict]) -> list[dict]:
    """One row per (step, engine, size): the median time and the largest peak of its rounds."""
    out = []
    for key in sorted({(r["step"], r["engine"], r["trades"]) for r in rows}):
        runs = [r for r in rows if (r["step"], r["engine"], r["trades"]) == key]
        out.append({"step": key[0], "engine": key[1], "trades": key[2], "rounds": len(runs),
                    "seconds": statistics.median(r["seconds"] for r in runs), "peak_gb": max(r["peak_gb"] for r in runs)})  # fmt: skip
    return out


def growth(rows: list[dict]) -> list[str]:
    """Exponents a, b of time ~ n^a and memory ~ n^b per (step, engine), consecutive sizes and first -> last."""
    out = []
    for key in sorted({(r["step"], r["engine"]) for r in rows}):
        runs = sorted((r for r in rows if (r["step"], r["engine"]) == key), key=lambda r: r["trades"])
        pairs = list(zip(runs, runs[1:], strict=False)) + ([(runs[0], runs[-1])] if len(runs) > 2 else [])
        for a, b in pairs:
            k = math.log(b["trades"] / a["trades"])
            out.append(f"| {key[0]} | {key[1]} | {a['trades'] / 1e6:.2f}M -> {b['trades'] / 1e6:.2f}M | "
                       f"n^{math.log(b['seconds'] / a['seconds']) / k:.2f} | n^{math.log(b['peak_gb'] / a['peak_gb']) / k:.2f} |")  # fmt: skip
    return out


def reference_seconds() -> float:
    """Seconds of a fixed piece of work like the steps' (a DuckDB hash aggregate and sort on both
    cores), timed before each size: it tells how fast the machine was when a row was measured."""
    import duckdb

    started = time.perf_counter()
    with duckdb.connect() as con:
        con.execute("SET threads = 2")
        con.execute("SELECT count(*) FROM (SELECT hash(i) % 1000003 AS k, count(*) AS n FROM range(60000000) t(i) "
                    "GROUP BY k ORDER BY n, k)").fetchall()  # fmt: skip
    return round(time.perf_counter() - started, 2)


def one_round(args: argparse.Namespace, round_: int) -> Iterator[dict]:
    """Every step of every size once, each as it is measured (appended to DATA/bench-scale.jsonl)."""
    for scale in args.scales:
        folder, db = market(args.data, scale), (args.stores or args.data) / f"store-{scale:g}.duckdb"
        reference = reference_seconds()
        for engine in args.engines:  # every DuckDB step first, then the Spark ones on the same store
            for step in STEPS:
                if step not in args.steps or (engine == "spark" and not supports_spark(step)):
                    continue
                if step == "ingest":
                    db.unlink(missing_ok=True)
                    db.with_suffix(".duckdb.wal").unlink(missing_ok=True)
                load = os.getloadavg()[0]
                seconds, peak = measure(step_cmd(step, folder, db, engine), _env(args.data))
                row = {"scale": scale, "trades": n_trades(folder), "step": step, "engine": engine,
                       "seconds": round(seconds, 1), "peak_gb": round(peak, 2), "load_before": round(load, 2),
                       "load_after": round(os.getloadavg()[0], 2), "round": round_, "reference_s": reference,
                       "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
                with (args.data / "bench-scale.jsonl").open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{row['trades']:,} trades | {step} ({engine}) {seconds:.1f} s, peak {peak:.2f} GB "
                      f"| load {row['load_before']} -> {row['load_after']} | reference {reference} s | round {round_}", flush=True)  # fmt: skip
                yield row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", type=float, nargs="+", default=[10.0, 40.0, 100.0])
    ap.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    ap.add_argument("--engines", nargs="+", choices=("duckdb", "spark"), default=["duckdb"])
    ap.add_argument("--rounds", type=int, default=1, help="run everything this many times over (medians reported)")
    ap.add_argument("--data", type=Path, default=Path("/work/bench-data"))
    ap.add_argument("--stores", type=Path, help="folder of the stores (default: --data), so a run leaves others' be")
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    if "score" in args.steps:
        ensure_model(args.data)
    rows = [row for round_ in range(1, args.rounds + 1) for row in one_round(args, round_)]
    medians = summary(rows)
    print(f"\nmedian of {args.rounds} round(s):\n| step | engine | trades | seconds | peak GB |\n|---|---|---|---|---|")
    print("\n".join(f"| {r['step']} | {r['engine']} | {r['trades']:,} | {r['seconds']:.1f} | {r['peak_gb']:.2f} |" for r in medians))
    print("\n| step | engine | trades | time growth | memory growth |\n|---|---|---|---|---|")
    print("\n".join(growth(medians)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

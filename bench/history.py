"""bench/results/history.tsv: one line per figure of every `make bench`, `make bench-check` and
`make bench-startup`, with the commit and date, appended and never rewritten; and
`make bench-history`, which draws them over the runs with gnuplot (bench/results/history.png).

Columns (tab-separated, header on the first line):
  date (UTC, ISO 8601)  commit (short hash, "+" when the tree had uncommitted changes)
  source (bench | bench-check | bench-startup)  figure (e.g. gate.put.instr_per_op)  value  unit
A figure's name says what it is; the same name across runs is the same measurement.
"""
import datetime
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HISTORY = os.path.join(HERE, "results", "history.tsv")
HEADER = "date\tcommit\tsource\tfigure\tvalue\tunit\n"


def commit():
    """Short hash of HEAD, with "+" when tracked files differ from it."""
    try:
        h = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=10).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return h + ("+" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def append(source, figures):
    """figures: [(name, value, unit)]. Appends them under one date and commit."""
    if not figures:
        return
    os.makedirs(os.path.dirname(HISTORY), exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    c = commit()
    new = not os.path.exists(HISTORY) or os.path.getsize(HISTORY) == 0
    with open(HISTORY, "a") as f:
        if new:
            f.write(HEADER)
        for name, value, unit in figures:
            if value is None:
                continue
            f.write(f"{now}\t{c}\t{source}\t{name}\t{value:.6g}\t{unit}\n")
    print(f"history: {len(figures)} figures appended to {os.path.relpath(HISTORY, ROOT)} "
          f"(commit {c})", file=sys.stderr)


def load():
    """[(date, commit, source, figure, value, unit)] in file order."""
    rows = []
    if not os.path.exists(HISTORY):
        return rows
    with open(HISTORY) as f:
        for i, line in enumerate(f):
            p = line.rstrip("\n").split("\t")
            if i == 0 and p[0] == "date" or len(p) != 6:
                continue
            try:
                rows.append((p[0], p[1], p[2], p[3], float(p[4]), p[5]))
            except ValueError:
                continue
    return rows


# Panels of history.png: (title, y label, mode, figure-name predicate, label of a figure).
# mode: "rel" = percent change from the figure's first value in the history (linear: a 3 % step
# or drift shows whatever the figure's size), "log" = value on a log scale, "lin" = value.
PANELS = [
    ("bench-check: server instructions per op (callgrind), change from the first run in the history",
     "% change", "rel",
     lambda n: (n.startswith("gate.") and n.endswith(".instr_per_op")) or
     (n.startswith("startup.") and n.endswith(".instr")),
     lambda n: n.split(".")[1] if n.startswith("gate.") else "startup " + n.split(".")[1]),
    ("start-up seconds (gate: exec to ready, 100k keys; bench-startup: exec to first Range)",
     "seconds", "log",
     lambda n: n.startswith("startup.") and n.endswith(".seconds"), lambda n: n.split(".")[1]),
    ("make bench: uetcd throughput (a report: moves with machine load)",
     "ops/s", "log",
     lambda n: n.startswith("bench.") and n.endswith(".uetcd_ops_per_s"), lambda n: n.split(".")[1]),
    ("make bench: uetcd ops/s / etcd ops/s (same minute, same machine)",
     "x etcd", "lin",
     lambda n: n.startswith("bench.") and n.endswith(".x_ops"), lambda n: n.split(".")[1]),
    ("make bench: noise indicator (CPU other processes used during the runs)",
     "% of a core", "lin",
     lambda n: n.startswith("bench.noise."), lambda n: "median over workloads"),
]


def plot(out_png):
    """Draws every panel's figures over the runs (x = run, labelled by commit). Returns 0/1."""
    rows = load()
    if not rows:
        print(f"bench-history: no figures yet in {os.path.relpath(HISTORY, ROOT)} "
              f"(run make bench-check or make bench)", file=sys.stderr)
        return 1
    # a run = one (date, commit, source) group; runs are numbered in file order
    runs, run_of = [], {}
    for d, c, s, *_ in rows:
        if (d, c, s) not in run_of:
            run_of[(d, c, s)] = len(runs)
            runs.append((d, c, s))
    datadir = os.path.join(HERE, "results", "history-plot")
    os.makedirs(datadir, exist_ok=True)
    panels = []
    for title, ylabel, mode, pred, label in PANELS:
        series = {}
        for d, c, s, name, v, _ in rows:
            if pred(name) and (v > 0 or mode == "lin"):
                series.setdefault(label(name), []).append((run_of[(d, c, s)], v))
        if mode == "rel":
            series = {f"{k} ({pts[0][1]:,.0f})": [(x, (v / pts[0][1] - 1) * 100) for x, v in pts]
                      for k, pts in series.items()}
        if series:
            panels.append((title, ylabel, mode, series))
    if not panels:
        print("bench-history: no plottable figures", file=sys.stderr)
        return 1
    xt = ", ".join(f'"{c} {d[5:16].replace("T", " ")}" {i}' for i, (d, c, s) in enumerate(runs))
    g = [f'set terminal pngcairo size 1400,{360 * len(panels)} font "DejaVu Sans,10"',
         f'set output "{out_png}"',
         f"set multiplot layout {len(panels)},1",
         "set key outside right top", "set grid", "set lmargin 12", "set rmargin 36",
         f"set xtics ({xt}) rotate by -40 font ',8'",
         f"set xrange [-0.5:{len(runs) - 0.5}]"]
    for pi, (title, ylabel, mode, series) in enumerate(panels):
        g += [f'set title "{title}"', f'set ylabel "{ylabel}"',
              "set logscale y" if mode == "log" else "unset logscale y"]
        plots = []
        for si, (name, pts) in enumerate(sorted(series.items())):
            path = os.path.join(datadir, f"p{pi}-s{si}.dat")
            with open(path, "w") as f:
                for x, v in pts:
                    f.write(f"{x} {v}\n")
            plots.append(f'"{path}" using 1:2 with linespoints pt 7 ps 0.6 title "{name}"')
        g.append("plot " + ", ".join(plots))
    g.append("unset multiplot")
    script = os.path.join(datadir, "history.gp")
    with open(script, "w") as f:
        f.write("\n".join(g) + "\n")
    r = subprocess.run(["gnuplot", script], capture_output=True, text=True)
    if r.returncode:
        print("bench-history: gnuplot failed:\n" + r.stderr, file=sys.stderr)
        return 1
    print(f"bench-history: {len(runs)} runs, {sum(len(p[3]) for p in panels)} series -> "
          f"{os.path.relpath(out_png, ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(plot(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results", "history.png")))

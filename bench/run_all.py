"""Run every benchmark in bench/ and write one table (and the details) to BENCHMARKS.md.

Each benchmark is a module ``bench/bench_<name>.py`` exposing ``run(quick: bool) -> dict``
with ``title`` (str), ``markdown`` (its section) and ``rows`` (summary rows, see
``_setup.summary_row``). ``ORDER`` fixes the order of the sections; modules not listed run
after them, alphabetically. A benchmark that fails is reported in the table (and the exit
status is 1), the others still run.

    .venv-bench/bin/python bench/run_all.py --out BENCHMARKS.md   # what `make bench` runs
    .venv-bench/bin/python bench/run_all.py --quick --only occlusion
    .venv-bench/bin/python bench/run_all.py --only shap_accuracy --out BENCHMARKS.md --update
"""

import argparse
import datetime
import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import _setup
from _setup import md_table

HERE = Path(__file__).resolve().parent
ORDER = ["overhead", "shap_accuracy", "occlusion", "crop", "large", "throughput", "regions",
         "shap_calibration", "defaults"]
COMMAND = "make bench  (= bash scripts/bench.sh: scripts/setup_bench.sh, then " \
          ".venv-bench/bin/python bench/run_all.py --out BENCHMARKS.md)"


def discover():
    """Benchmark names in run order."""
    found = sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))
    return [n for n in ORDER if n in found] + [n for n in found if n not in ORDER]


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        return float("nan")


def versions():
    out = [f"Python {platform.python_version()}"]
    for name in ("numpy", "onnxruntime", "shap"):
        try:
            out.append(f"{name} {importlib.import_module(name).__version__}")
        except ImportError:
            out.append(f"{name} not installed")
    return ", ".join(out)


def machine_lines():
    cores = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    try:
        load = "load average at the end {:.1f} / {:.1f} / {:.1f} (1 / 5 / 15 min)".format(
            *os.getloadavg())
    except OSError:
        load = "load average unknown"
    return [f"- Machine: {cpu_model()}, {cores} logical cores ({usable} usable), "
            f"{memory_gib():.0f} GiB RAM, {platform.system()} {platform.release()}; {load}",
            f"- Software: {versions()}",
            f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}"]


def run_one(name, quick):
    t0 = time.perf_counter()
    try:
        module = importlib.import_module(f"bench_{name}")
        out = module.run(quick=quick)
        for key in ("title", "markdown", "rows"):
            if key not in out:
                raise KeyError(f"bench_{name}.run() returned no {key!r}")
        ok = True
    except Exception as exc:  # a failing benchmark must not hide the others
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        out = {"title": f"bench_{name}", "markdown": f"FAILED:\n\n```\n{tb}\n```",
               "rows": [_setup.summary_row(f"bench_{name}", "run",
                                           f"FAILED: {type(exc).__name__}: {exc}", None,
                                           False)]}
        ok = False
    out["seconds"] = time.perf_counter() - t0
    return out, ok


def render(sections, quick, seconds, command):
    status = {True: "yes", False: "**no**", None: ""}
    rows = [[r["benchmark"], r["measure"], r["result"], r["goal"] or "",
             status[r["met"]]] for s in sections for r in s["rows"]]
    table = md_table(["benchmark", "measure", "result", "goal", "met"], rows)
    head = ["# Benchmarks", "",
            "Figures are ratios or rates measured side by side in the same run, on a shared "
            "machine: compare within a run, not across runs.", ""]
    head += machine_lines()
    head += [f"- Command: `{command}`" + ("  (quick mode)" if quick else ""),
             f"- Run time: {seconds:.0f} s", "", table, ""]
    body = []
    for s in sections:
        body += [f"## {s['title']}", "", s["markdown"].rstrip(), "",
                 f"_({s['seconds']:.0f} s)_", ""]
    return table, "\n".join(head + body)


def _key(title):
    """A section's number ("2.") identifies it across renamings of its title."""
    return title.split(" ", 1)[0]


def splice(old, sections, command, seconds):
    """The report ``old`` with the table rows and sections of ``sections`` replaced (matched by
    their number), the others kept; a line in the header says what was updated."""
    lines = old.splitlines()
    new_rows = {}
    for s in sections:
        new_rows.setdefault(_key(s["title"]), []).extend(
            "| " + " | ".join(str(c) for c in [r["benchmark"], r["measure"], r["result"],
                                               r["goal"] or "", {True: "yes", False: "**no**",
                                                                 None: ""}[r["met"]]]) + " |"
            for r in s["rows"])
    out, done = [], set()
    for line in lines:
        cell = line[2:].split(" | ", 1)[0] if line.startswith("| ") else None
        key = _key(cell) if cell else None
        if key in new_rows:
            if key not in done:
                out.extend(new_rows[key])
                done.add(key)
            continue
        out.append(line)
    # a section new to the report: its rows after the summary table's last
    added = [row for key, rows in new_rows.items() if key not in done for row in rows]
    start = next((i for i, line in enumerate(out) if line.startswith("| benchmark |")), None)
    if added and start is not None:
        end = start
        while end < len(out) and out[end].startswith("|"):
            end += 1
        out[end:end] = added
    text = "\n".join(out)
    for s in sections:
        body = f"## {s['title']}\n\n{s['markdown'].rstrip()}\n\n_({s['seconds']:.0f} s)_\n"
        parts = text.split("\n## ")
        for i, part in enumerate(parts[1:], 1):
            if _key(part) == _key(s["title"]):
                parts[i] = body[3:]
                break
        else:
            parts[-1] = parts[-1].rstrip("\n") + "\n"    # a blank line before the new one
            parts.append(body[3:])
        text = "\n## ".join(parts)
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    names = ", ".join(s["title"] for s in sections)
    head, sep, rest = text.partition("\n\n| benchmark |")
    head += (f"\n- Updated {stamp}: {names} (`{command}`, {seconds:.0f} s; the rest is from the "
             "run above)")
    return head + sep + rest if sep else head


def write_atomic(path, text):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the Markdown report here (atomically)")
    ap.add_argument("--quick", action="store_true", help="short runs (the smoke test's size)")
    ap.add_argument("--only", nargs="*", help="benchmark names (bench_<name>.py) to run")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--update", action="store_true",
                    help="with --out: replace only the run benchmarks' rows and sections in the "
                         "existing report, keep the others")
    args = ap.parse_args(argv)
    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            ap.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(names)}")
        names = [n for n in names if n in args.only]
    t0 = time.perf_counter()
    sections, all_ok = [], True
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        out, ok = run_one(name, args.quick)
        print(f"bench: {name} done in {out['seconds']:.0f} s", file=sys.stderr, flush=True)
        sections.append(out)
        all_ok &= ok
    command = COMMAND if not args.only and not args.quick else \
        "bench/run_all.py " + " ".join(argv if argv is not None else sys.argv[1:])
    table, report = render(sections, args.quick, time.perf_counter() - t0, command)
    print(table)
    if args.out and args.update and Path(args.out).is_file():
        report = splice(Path(args.out).read_text(encoding="utf-8"), sections, command,
                        time.perf_counter() - t0)
    if args.out:
        write_atomic(args.out, report)
        print(f"bench: wrote {args.out}", file=sys.stderr)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())

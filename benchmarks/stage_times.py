"""Stage timings of a pipeline run, read from its log (the ``[HetComp <s>]`` stage lines).

Each stage lasts until the next stage line; Ray task lines ("started as a Ray task", "finished
... in <s>") are listed with the seconds the task reported, and the teacher stage is everything
before "ensemble knowledge".

    python benchmarks/stage_times.py log/HetCompStudent/<run>.log [--out results/x.md]
"""

import argparse
import re
import sys

from _common import write_text_atomically

STAGE = re.compile(r"\[HetComp\s+([0-9.]+)s\]\s+(.*)$")
TASK_DONE = re.compile(r"^(.*): finished on Ray worker .* in ([0-9.]+)s"
                       r"(?: \(([0-9.]+)s of it[^;)]*(?:; worker's peak memory so far ([0-9.]+) GB)?)?")


def read_stages(lines):
    """[(seconds since the run started, text)] of the log's stage lines."""
    stages = []
    for line in lines:
        match = STAGE.search(line.rstrip())
        if match:
            # the stage text may carry colour codes from the terminal logger
            text = re.sub(r"\x1b\[[0-9;]*m", "", match.group(2)).strip()
            stages.append((float(match.group(1)), text))
    return stages


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log")
    parser.add_argument("--out")
    args = parser.parse_args()
    with open(args.log, encoding="utf-8", errors="replace") as f:
        stages = read_stages(f)
    if not stages:
        sys.exit(f"error: {args.log} has no [HetComp ...s] stage lines: give a pipeline run's log")
    lines = [f"# Stages of {args.log}", "", "| stage | starts at s | lasts s |", "|---|---:|---:|"]
    timed = [(t, text) for t, text in stages if not TASK_DONE.match(text)
             and not text.endswith("started as a Ray task")]
    for (start, text), following in zip(timed, timed[1:] + [(None, None)]):
        lasts = "" if following[0] is None else f"{following[0] - start:.1f}"
        lines.append(f"| {text} | {start:.1f} | {lasts} |")
    teacher_end = next((t for t, text in stages if text == "ensemble knowledge"), None)
    tasks = [TASK_DONE.match(text) for _, text in stages]
    tasks = [m for m in tasks if m]
    if tasks:
        lines += ["", "| Ray task | task s | of it rebuilding the split s | worker's peak GB |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {m.group(1)} | {float(m.group(2)):.1f} | {m.group(3) or ''} | "
                  f"{m.group(4) or ''} |" for m in tasks]
    if teacher_end is not None:
        lines += ["", f"teacher stage (run start to 'ensemble knowledge'): {teacher_end:.1f} s"]
    text = "\n".join(lines) + "\n"  # a log's figures: no load average of this machine now
    print(text, end="")
    if args.out:
        write_text_atomically(args.out, text)


if __name__ == "__main__":
    main()

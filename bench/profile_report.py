"""Summarizes `perf script -F comm,tid,ip,sym` output of one process.

Usage: profile_report.py SCRIPT_TXT FOLDED_OUT "frame|frame..."
         [--bench-table BENCH_TXT --phase PHASE --seconds S --frequency F]

Prints the share of samples of each thread, the frames with the largest
inclusive shares (a frame counted once per sample however often it recurs in
the stack), and for each named frame (a substring of a symbol) what its
samples were spent in one level down. Given the table `orgs-bench writes`
printed and the phase perf recorded, for S seconds at F samples a second of
CPU time, it also tells each thread's and each named frame's CPU time per
call of the phase. Writes the stacks folded, root first, one
`frame;frame;... count` line per distinct stack, for a flame graph.
"""

import argparse
import collections
import re

# A row of the benchmark's tables: the name, then req/s, p50, p99, p99.9 and
# errors.
ROW = re.compile(r"(.*?)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\d+\s")

# Frames of the runtime and the thread's start, in nearly every stack.
COMMON = (
    "std::sys::",
    "core::ops::function::",
    "start_thread",
    "__rust_begin_short_backtrace",
    "tokio::runtime::",
    "clone3",
    "[unknown]",
)


def read_samples(path):
    """Yields (thread, frames leaf first) for each sample."""
    thread, frames = None, []
    with open(path, encoding="utf-8", errors="replace") as script:
        for line in script:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if not line[0].isspace():
                if thread is not None:
                    yield thread, frames
                fields = line.split()
                thread, frames = " ".join(fields[:2]), []
                continue
            # "\t    ip symbol+offset (dso)" or "\t    ip symbol".
            parts = line.strip().split(" ", 1)
            symbol = parts[1] if len(parts) > 1 else parts[0]
            frames.append(symbol)
    if thread is not None:
        yield thread, frames


def phase_rate(table, phase):
    """Calls a second of the first row of the benchmark's tables that names
    the phase, or None."""
    with open(table, encoding="utf-8") as rows:
        for line in rows:
            found = ROW.match(line)
            if found and found.group(1).startswith(phase):
                return float(found.group(2))
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("script")
    parser.add_argument("folded")
    parser.add_argument("frames")
    parser.add_argument("--bench-table")
    parser.add_argument("--phase")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--frequency", type=float)
    args = parser.parse_args()
    script, folded_path = args.script, args.folded
    named = [name for name in args.frames.split("|") if name]
    rate = None
    if args.bench_table and args.phase:
        rate = phase_rate(args.bench_table, args.phase)
    per_call = None
    if rate and args.seconds and args.frequency:
        # A sample stands for 1/F s of one thread's CPU time.
        per_call = 1e6 / (args.frequency * args.seconds * rate)
    samples = list(read_samples(script))
    total = len(samples)
    if total == 0:
        print("no samples: was the server busy while perf recorded?")
        return
    threads = collections.Counter(thread for thread, _ in samples)
    inclusive = collections.Counter()
    below = {name: collections.Counter() for name in named}
    folded = collections.Counter()
    for thread, frames in samples:
        comm = thread.split()[0]
        folded[";".join([comm] + frames[::-1])] += 1
        for frame in set(frames):
            inclusive[frame] += 1
        for name in named:
            # The outermost frame that matches; what it called, or itself.
            hits = [i for i, frame in enumerate(frames) if name in frame]
            if hits:
                i = max(hits)
                below[name][frames[i - 1] if i > 0 else "(its own code)"] += 1

    def share(count):
        return f"{100.0 * count / total:6.2f}%"

    def cpu(count):
        return f"{count * per_call:6.0f} µs a call" if per_call else ""

    print(f"\n{total} samples of the server")
    if per_call:
        cores = total / (args.frequency * args.seconds)
        print(
            f"{cores:.2f} cores busy at {rate:,.0f} calls a second:"
            f" {total * per_call:,.0f} µs of CPU a call"
        )
    print("\nby thread (name, id):")
    for thread, count in threads.most_common(8):
        print(f"  {share(count)}  {cpu(count)}  {thread}")
    print("\nlargest inclusive shares (the runtime's own frames left out):")
    shown = 0
    for frame, count in inclusive.most_common():
        if any(common in frame for common in COMMON):
            continue
        print(f"  {share(count)}  {frame[:150]}")
        shown += 1
        if shown == 40:
            break
    for name in named:
        counter = below[name]
        within = sum(counter.values())
        cost = f"; {cpu(within).strip()}" if per_call else ""
        print(f"\nwithin {name} ({share(within).strip()} of all samples{cost}):")
        for frame, count in counter.most_common(15):
            print(f"  {share(count)}  {frame[:150]}")
    with open(folded_path, "w", encoding="utf-8") as out:
        for stack, count in folded.items():
            out.write(f"{stack} {count}\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference runner for the Denali conformance vectors. Python 3 standard library only.

Usage:
  check_vectors.py DIR --dump FORM [--limit N]
      Print FORM's vectors (DIR/FORM.jsonl.gz) one field a line.
  check_vectors.py DIR --run COMMAND [--filter TEXT] [--sample N]
      Run the vectors on an emulator: COMMAND (split like a shell would) is started once and
      speaks the protocol below. Prints each failing case, then a summary line. Exit status:
      0 all passed, 4 some case failed, 2 bad input.

Protocol: for each case the runner writes ONE line of JSON to the emulator's stdin:
  {"form": ..., "code": "hex", "init": {"eax": ..., "eip": ..., "eflags": ...},
   "memory": [[addr, "hex"], ...], "read": [[addr, length], ...]}
The emulator loads the case (16 MiB of zeroed memory, the regions of "memory", the code at
init.eip), runs it until EIP leaves [init.eip, init.eip + len(code)) or the machine stops, and
writes ONE line of JSON to its stdout:
  {"final": {"eax": ..., "eip": ..., "eflags": ...},
   "final_memory": [[addr, "hex"], ...],   # the bytes at each "read" range, in order
   "stop": null | {"kind": "memory", "addr": N} | {"kind": "divide"} | ...}
Stops are as in conformance/README.md; with a stop, "final" is the state before the stopping
instruction. The runner compares registers, EIP, EFLAGS under flags_mask, memory and stop.
"""

import argparse
import gzip
import json
import os
import shlex
import subprocess
import sys

REGS = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"]
FLAGS = [(0, "CF"), (2, "PF"), (4, "AF"), (6, "ZF"), (7, "SF"), (8, "TF"), (9, "IF"), (10, "DF"), (11, "OF")]
EXTENSION = ".jsonl.gz"


def flag_names(value):
    names = [name for bit, name in FLAGS if value & (1 << bit)]
    names += ["bit%d" % b for b in range(32) if value & (1 << b) and b not in dict(FLAGS)]
    return " ".join(names) or "none"


def read_form(path):
    """The vectors of one file, as dicts. Errors name the file and line."""
    vectors = []
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    vectors.append(json.loads(line))
                except ValueError as error:
                    raise SystemExit("%s:%d: not a vector: %s" % (path, number, error))
    return vectors


def forms(directory):
    return sorted(name[: -len(EXTENSION)] for name in os.listdir(directory) if name.endswith(EXTENSION))


def dump(directory, form, limit):
    for index, vector in enumerate(read_form(os.path.join(directory, form + EXTENSION))[:limit], 1):
        init, final = vector["init"], vector["final"]
        print("case %d: code %s at 0x%08x" % (index, vector["code"], init["eip"]))
        for key in REGS + ["eip"]:
            print("  %-6s 0x%08x -> 0x%08x" % (key, init[key], final[key]))
        print("  eflags %s -> %s (compared: %s)"
              % (flag_names(init["eflags"]), flag_names(final["eflags"]), flag_names(vector["flags_mask"])))
        for (addr, data), (_, after) in zip(vector["memory"], vector["final_memory"]):
            print("  memory 0x%08x: %s -> %s" % (addr, data, after))
        print("  stop   %s" % (json.dumps(vector["stop"]) if vector["stop"] else "none (EIP left the code)"))


def compare(vector, result):
    """The differences between a vector and an emulator's result, one string each."""
    found = []
    expected, got = vector["final"], result.get("final", {})
    for key in REGS + ["eip"]:
        if got.get(key) != expected[key]:
            have = got.get(key)
            have = "0x%08x" % have if isinstance(have, int) else json.dumps(have)
            found.append("%s: expected 0x%08x, got %s" % (key, expected[key], have))
    mask = vector["flags_mask"]
    if (got.get("eflags", 0) & mask) != (expected["eflags"] & mask):
        found.append("eflags: expected %s, got %s (compared: %s)"
                     % (flag_names(expected["eflags"] & mask), flag_names(got.get("eflags", 0) & mask),
                        flag_names(mask)))
    got_memory = result.get("final_memory", [])
    for index, (addr, want) in enumerate(vector["final_memory"]):
        have = got_memory[index][1].lower() if index < len(got_memory) else None
        if have != want:
            found.append("memory 0x%08x: expected %s, got %s" % (addr, want, have))
    if result.get("stop") != vector["stop"]:
        found.append("stop: expected %s, got %s" % (json.dumps(vector["stop"]), json.dumps(result.get("stop"))))
    return found


def run(directory, command, text_filter, sample):
    emulator = subprocess.Popen(shlex.split(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    selected = [f for f in forms(directory) if text_filter is None or text_filter.lower() in f.lower()]
    cases = failures = 0
    for form in selected:
        vectors = read_form(os.path.join(directory, form + EXTENSION))
        if sample and sample < len(vectors):  # spread evenly, as `denali conformance --sample`
            vectors = [vectors[k * len(vectors) // sample] for k in range(sample)]
        for index, vector in enumerate(vectors, 1):
            request = {key: vector[key] for key in ("form", "code", "init", "memory")}
            request["read"] = [[addr, len(data) // 2] for addr, data in vector["final_memory"]]
            emulator.stdin.write(json.dumps(request) + "\n")
            emulator.stdin.flush()
            reply = emulator.stdout.readline()
            if not reply:
                raise SystemExit("check_vectors: the emulator exited during %s case %d" % (form, index))
            cases += 1
            differences = compare(vector, json.loads(reply))
            if differences:
                failures += 1
                print("FAIL %s case %d: code %s" % (form, index, vector["code"]))
                for line in differences:
                    print("    " + line)
    emulator.stdin.close()
    emulator.wait()
    print("check_vectors: %d forms, %d cases, %d failures" % (len(selected), cases, failures))
    return 4 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", help="the vectors directory, e.g. conformance/vectors")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--dump", metavar="FORM", help="print FORM's vectors")
    action.add_argument("--run", metavar="COMMAND", help="run the vectors on COMMAND (see the protocol)")
    parser.add_argument("--limit", type=int, default=10, help="--dump: at most N cases (default 10)")
    parser.add_argument("--filter", help="--run: only forms whose name contains TEXT (any case)")
    parser.add_argument("--sample", type=int, help="--run: N cases of each form, spread evenly")
    args = parser.parse_args()
    try:
        if args.dump:
            dump(args.dir, args.dump, args.limit)
            return 0
        return run(args.dir, args.run, args.filter, args.sample)
    except (OSError, EOFError) as error:
        print("check_vectors: %s" % error, file=sys.stderr)
        return 2
    except SystemExit as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

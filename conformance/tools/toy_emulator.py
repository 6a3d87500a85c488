#!/usr/bin/env python3
"""A toy emulator speaking the protocol of check_vectors.py, to show its emulator side: it
knows `add eax,ebx` (01 d8) and `hlt` (f4) and calls everything else invalid. Try:

  python3 conformance/tools/check_vectors.py conformance/vectors --filter Add_rm32_r32 \\
      --run "python3 conformance/tools/toy_emulator.py"
"""

import json
import sys

REGS = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"]


def parity(byte):
    return bin(byte).count("1") % 2 == 0


def step(state, code):
    """Runs the code; returns the stop, or None when EIP left it."""
    end = state["eip"] + len(code) // 2
    while state["eip"] < end:
        offset = (state["eip"] - (end - len(code) // 2)) * 2
        if code[offset:offset + 4] == "01d8":  # add eax,ebx
            a, b = state["eax"], state["ebx"]
            r = (a + b) & 0xFFFFFFFF
            flags = state["eflags"] & ~0x8D5
            flags |= 0x001 if a + b > 0xFFFFFFFF else 0
            flags |= 0x004 if parity(r & 0xFF) else 0
            flags |= 0x010 if (a ^ b ^ r) & 0x10 else 0
            flags |= 0x040 if r == 0 else 0
            flags |= 0x080 if r & 0x80000000 else 0
            flags |= 0x800 if (~(a ^ b) & (a ^ r)) & 0x80000000 else 0
            state["eax"], state["eflags"] = r, flags
            state["eip"] += 2
        elif code[offset:offset + 2] == "f4":  # hlt: the virtual idle instruction
            return {"kind": "idle"}
        else:
            return {"kind": "invalid"}
    return None


for line in sys.stdin:
    case = json.loads(line)
    state = dict(case["init"])
    memory = {addr: data for addr, data in case["memory"]}  # this toy never writes memory
    stop = step(state, case["code"])
    final_memory = [[addr, memory.get(addr, "00" * length)] for addr, length in case["read"]]
    print(json.dumps({"final": state, "final_memory": final_memory, "stop": stop}), flush=True)

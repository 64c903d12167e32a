"""How fast ``ninelives model`` answers: exactly for 200 components, by simulation for 50.

Not a test. Run: ``.venv/bin/python bench/model_bench.py`` (``--components``,
``--sim-components``, ``--years``, ``--rounds``). It writes architectures in the file's own
YAML, stage after stage in series, each stage one of the shapes a real plan has:

- two copies in parallel (power supplies), with a common-cause share on every other one;
- 2 of 3 servers;
- a standby pair with 99% failover success and a 30 s switch;
- two racks in parallel, each a switch in series with two servers in parallel, with a
  common-cause share over the racks (nested blocks) on every other one;
- a single component (a database primary).

Components have MTBFs from 1,000 h to 9,000 h and repair times from 30 min to 8 h (a few
given by availability alone). Times: parsing, the exact answer with every block's
importance (``predict``), and the Monte Carlo (``simulate``); the best of ``--rounds``,
wall clock and, for the simulation, the CPU time of this process too (on a machine
shared with other work the wall clock waits for the CPU; the CPU time does not).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np

from ninelives.model.blocks import Block, Component, walk
from ninelives.model.load import parse_arch
from ninelives.model.report import predict
from ninelives.model.simulate import simulate


def architecture(components: int) -> str:
    """YAML of an architecture with exactly ``components`` component instances."""
    lines = ["components:"]
    stages: list[str] = []
    used = 0
    index = 0
    while used < components:
        left = components - used
        shape = index % 5
        if [2, 3, 2, 6, 1][shape] > left:  # the last stages: what still fits
            shape = 0 if left >= 2 else 4
        name = f"c{index}"
        mtbf = 1000 + (index * 1733) % 8000
        mttr = [0.5, 1, 2, 4, 8][index % 5]
        if index % 7 == 3:
            lines.append(f"  {name}: {{availability: {100 * mtbf / (mtbf + mttr):.4f}%}}")
        else:
            lines.append(f"  {name}: {{mtbf: {mtbf}h, mttr: {mttr}h}}")
        if shape == 0:
            beta = ", beta: 0.05" if index % 2 else ""
            stages.append(f"    - parallel: {{of: {name}, count: 2{beta}}}")
            used += 2
        elif shape == 1:
            stages.append(f"    - k_of_n: {{k: 2, of: {name}, count: 3}}")
            used += 3
        elif shape == 2:
            stages.append(f"    - standby: {{primary: {name}, backup: {name}, "
                          "failover_success: 99%, failover_time: 30s}")
            used += 2
        elif shape == 3:
            lines.append(f"  {name}sw: {{mtbf: 20000h, mttr: 2h}}")
            rack = f"{{series: [{name}sw, {{parallel: [{name}, {name}]}}]}}"
            beta = ", beta: 0.05" if index % 2 else ""
            stages.append(f"    - parallel: {{of: [{rack}, {rack}]{beta}}}")
            used += 6
        else:
            stages.append(f"    - {name}")
            used += 1
        index += 1
    return "\n".join([*lines, "system:", "  series:", *stages]) + "\n"


def _components(root: Block) -> int:
    """Component copies, without the common-cause blocks that ``beta`` adds."""
    return sum(isinstance(block, Component) and block.note != "common cause"
               for block in walk(root))


def best(rounds: int, work: Callable[[], object]) -> float:
    return best_with_cpu(rounds, work)[0]


def best_with_cpu(rounds: int, work: Callable[[], object]) -> tuple[float, float]:
    """The shortest wall-clock time and the shortest CPU time of ``rounds`` runs."""
    wall, cpu = [], []
    for _ in range(rounds):
        started, used = time.perf_counter(), time.process_time()
        work()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    return min(wall), min(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--components", type=int, default=200)
    parser.add_argument("--sim-components", type=int, default=50)
    parser.add_argument("--years", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()

    text = architecture(options.components)
    parse_s = best(options.rounds, lambda: parse_arch(text))
    root = parse_arch(text)
    count = _components(root)
    analytic_s = best(options.rounds, lambda: predict(root))
    prediction = predict(root)
    print(f"analytic: {count} components, {len(prediction.blocks)} blocks: parse "
          f"{parse_s * 1000:.1f} ms, availability and importance {analytic_s * 1000:.1f} ms "
          f"(target < 50 ms)")

    small = parse_arch(architecture(options.sim_components))
    small_count = _components(small)
    exact = predict(small).availability
    sim_rounds = max(1, options.rounds // 2)
    sim_s, sim_cpu_s = best_with_cpu(
        sim_rounds, lambda: simulate(small, options.years, np.random.default_rng(1)))
    result = simulate(small, options.years, np.random.default_rng(1))
    print(f"simulate: {small_count} components, {options.years:,} system-years: "
          f"{sim_s:.2f} s, CPU {sim_cpu_s:.2f} s (target < 5 s); {result.outages:,} system "
          "outages; "
          f"exact {exact:.7f}, simulated {result.availability:.7f} "
          f"[{result.low:.7f}, {result.high:.7f}]")
    print(json.dumps({
        "components": count, "parse_ms": round(parse_s * 1000, 2),
        "analytic_ms": round(analytic_s * 1000, 2), "sim_components": small_count,
        "years": options.years, "simulate_s": round(sim_s, 3),
        "simulate_cpu_s": round(sim_cpu_s, 3),
        "contains_exact": result.contains(exact),
    }))


if __name__ == "__main__":
    main()

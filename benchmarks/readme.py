"""Write a benchmark run's figures into the README: ``python -m benchmarks.readme RESULT.json``.

RESULT is a file whose last line is the JSON object ``python -m benchmarks --json`` prints. The
table between the ``<!-- benchmarks -->`` markers in README.md is replaced; nothing is typed by
hand.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def table(run: dict[str, object]) -> str:
    machine = run["machine"]
    assert isinstance(machine, dict)
    lines = [
        f"Latest run: `python -m benchmarks{' --quick' if run['mode'] == 'quick' else ''}` "
        f"({run['mode']}, {run['seconds']} s, {machine['cpus']} cores, "
        f"load generator {machine['load_generator']}, load average at start {machine['loadavg_start'][0]}).",
        "",
        "| metric | value | target | met |",
        "|---|---|---|---|",
    ]
    metrics = run["metrics"]
    assert isinstance(metrics, dict)
    for name, m in metrics.items():
        value = "skipped" if m.get("skipped") else f"{m['value']} {m['unit']}"
        met = {True: "yes", False: "**no**", None: "n/a"}[m.get("met")]
        note = f" ({m['note']})" if m.get("note") else ""
        lines.append(f"| `{name}` | {value}{note} | {m.get('target') or '-'} | {met} |")
    return "\n".join(lines)


def main() -> None:
    result = Path(sys.argv[1]).read_text(encoding="utf-8").strip().splitlines()
    run = json.loads(next(line for line in reversed(result) if line.startswith("{")))
    text = README.read_text(encoding="utf-8")
    block = f"{START}\n{table(run)}\n{END}"
    if START in text:
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Benchmarks\n\n" + block + "\n"
    README.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

"""``resilient-llm demo --quick`` end to end: the table, ``demo.json`` and the chart tell the same numbers.

One run of the quick workload (64 calls, about 20 s): the incident's settings with the official openai
client hang and are stopped at the stated cut-off; the library's defaults answer every call.
"""

from __future__ import annotations

import io
import json
import re
import struct
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from rich.console import Console

from resilient_llm.demo._run import DemoConfig, run_demo

pytestmark = [pytest.mark.integration]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.mark.timeout(120)
def test_quick_demo_table_json_and_chart_agree(tmp_path: Path) -> None:
    cfg = replace(DemoConfig.quick(), out_dir=tmp_path)
    out = io.StringIO()
    results = anyio.run(run_demo, cfg, Console(file=out, width=140, color_system=None))
    text = out.getvalue()
    report = json.loads((tmp_path / "demo.json").read_text())

    incident, library = report["runs"]
    assert incident["client"].startswith("openai ")  # the official client, never a stand-in
    assert library["ok"] == library["calls"] == 64 and library["hung"] == library["not_run"] == 0
    assert [r.count("ok") for r in results] == [incident["ok"], library["ok"]]

    # The cut-off said in the header is the one applied: a stopped run ends at exactly that multiple.
    assert report["limit_factor"] == 6.0
    assert f"cut-off, 6 × ideal = {report['cutoff_simulated_s']:.0f} simulated s" in text
    if incident["limit_hit"]:
        assert incident["makespan_over_ideal"] == 6.0

    # Each table row shows the JSON's numbers, hung and not run apart.
    for run in report["runs"]:
        cut = r"\+" if run["limit_hit"] else ""
        row = (
            rf"{re.escape(run['label'])}\s*│\s*{run['ok']}\s*│\s*{run['failed']}\s*│\s*{run['hung']}\s*│"
            rf"\s*{run['not_run']}\s*│\s*{run['makespan_simulated_s']:.0f}{cut}\s*│"
            rf"\s*{run['makespan_over_ideal']:.2f}{cut}\s*│"
        )
        assert re.search(row, text), (row, text)

    assert png_size(tmp_path / "demo.png") == (1200, 900)

"""tools.bench end to end on the CPU build: dev gemma-1b's rendered flags, tiny model.

dev/gemma-1b is used because its rendered command is the OpenAI server with
flags the CPU build accepts after the CPU replacements (GPU memory flag
dropped, context capped); prod/llama-70b would also need tensor parallelism 8
rewritten to 1 and its TPU environment dropped, so it exercises less of what
the deployment really runs.
"""

from __future__ import annotations

import json
import time

import pytest

from tools import bench

pytestmark = pytest.mark.integration


def test_bench_reports_throughput_for_dev_gemma(vllm_python, capsys):
    started = time.monotonic()
    code = bench.main(["dev", "gemma-1b", "--tiny", "--python", str(vllm_python),
                       "--input-len", "32", "--output-len", "16", "--num-prompts", "16",
                       "--concurrency", "4", "--start-timeout", "240",
                       "--bench-timeout", "180", "--json"])
    out, err = capsys.readouterr()
    print(f"\n[integration] bench run took {time.monotonic() - started:.1f} s")
    assert code == 0, err[-4000:]
    report = json.loads(out)
    project = report["results"]["project"]
    print(f"[integration] {project}")
    assert project["completed"] == 16
    assert project["output_tokens_per_s"] > 0
    assert project["mean_tpot_ms"] > 0
    argv = report["project_argv"]
    # dev/gemma-1b streams the bucket copy: the rendered --load-format=runai_streamer becomes dummy.
    assert "--load-format=dummy" in argv or argv[argv.index("--load-format") + 1] == "dummy", argv
    assert "--host=127.0.0.1" in report["project_argv"]

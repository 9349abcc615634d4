"""Every benchmark still runs, at a toy size: the figures in the notes come from these scripts.

Speed is not asserted here (see benchmarks/); agreement is, where a benchmark checks it.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOY = {
    "bench_atlas.py": ["--n", "30", "--alexnet", "0", "--batch-size", "8", "--device", "cpu"],
    "bench_data.py": ["--megapixels", "0.5", "--repeat", "1"],
    "bench_deconv.py": ["--images", "1", "--sample", "2", "--no-captum", "--threads", "1", "--device", "cpu"],
    "bench_occlusion.py": ["--n", "2", "--alexnet", "0", "--repeats", "1", "--loop", "1", "--device", "cpu"],
    "bench_topk.py": ["--n", "50", "--alexnet", "0", "--repeats", "1", "--naive", "5", "--batch-size", "25",
                      "--device", "cpu"],
    "bench_train.py": ["--images", "64", "--batch-size", "32", "--repeats", "1", "--device", "cpu"],
    "bench_world.py": [],
}


def test_every_benchmark_has_a_toy_size():
    assert sorted(TOY) == sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("script", sorted(TOY))
def test_benchmark_runs(script, tmp_path):
    env = dict(os.environ, ZFCOURSE_CACHE=str(tmp_path / "cache"), TORCH_HOME=str(tmp_path / "torch"),
               ZFCOURSE_WORLD="synthetic", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *TOY[script]], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip(), "no figures printed"
    if script == "bench_deconv.py":
        summary = next(line for line in run.stdout.splitlines() if line.startswith("SUMMARY"))
        assert float(re.search(r"max_rel_diff=(\S+)", summary).group(1)) < 1e-5, summary
        assert float(re.search(r"arithmetic_bound=([\d.]+)x", summary).group(1)) > 1, summary

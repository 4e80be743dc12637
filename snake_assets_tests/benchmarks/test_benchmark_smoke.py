"""The throughput benchmark still runs end to end (tiny sizes) and prints its figures."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "embedding_throughput.py"


def test_embedding_throughput_benchmark_runs_at_tiny_sizes(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--quick", "--images", "24", "--vitb-images", "2", "--vitb-layers", "1",
           "--rss-counts", "8,16", "--repeats", "1", "--workers", "1", "--batch-size", "8", "--work", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert any(line.startswith("(a) engine end to end") for line in lines)
    figures = json.loads(lines[-1])
    for key in ("model_bound_ratio", "data_bound_ratio", "vs_paper_ratio", "rss_mb_1k", "rss_mb_5k"):
        assert figures[key] > 0, key
    assert figures["rss_counts"] == [8, 16] and figures["images"] == {"tiny": 24, "vitb14": 2}
    assert figures["images_per_s"]["vitb14"]["b"] is None  # the paper's loop on ViT-B is skipped in --quick

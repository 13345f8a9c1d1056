"""Training across processes: torchrun with 2 CPU processes on the gloo backend."""
import json
import subprocess
import sys
from pathlib import Path

import torch

from conftest import console_script

HERE = Path(__file__).parent


def test_torchrun_two_processes_gloo(tmp_path):
    r = subprocess.run([console_script('torchrun'), '--nproc_per_node', '2', '--master_port', '29517',
                        str(HERE / 'ddp_toy_train.py'), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = [json.loads(l) for l in (tmp_path / 'log.jsonl').read_text().splitlines()]
    assert len(log) == 2, 'rank 0 alone writes one line per epoch'
    assert [r['samples'] for r in log] == [128, 128], 'the epoch record covers both processes\' shards'
    state = torch.load(tmp_path / 'last.pt', weights_only=False)
    # the participation counts were summed over both processes before U was chosen
    for a in ('F', 'C'):
        p = state['trackers'][a]['history'][-1]
        assert abs(sum(p) - 1) < 1e-9
    assert state['epoch'] == 1

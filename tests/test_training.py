"""Training across processes: torchrun with 2 CPU processes on the gloo backend."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from conftest import console_script

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_gloo(tmp_path):
    # loopback only: gloo otherwise picks the interface the host name resolves to, which a sandboxed
    # runner may not route
    env = {**os.environ, 'GLOO_SOCKET_IFNAME': 'lo', 'MASTER_ADDR': '127.0.0.1'}
    r = subprocess.run([console_script('torchrun'), '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
                        '--master_port', str(_free_port()), str(HERE / 'ddp_toy_train.py'), str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env=env)
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

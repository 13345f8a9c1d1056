"""Training across processes: torchrun with 2 CPU processes on the gloo backend."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from mmp_repro.training import read_checkpoint

from conftest import console_script

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _launch(run_dir):
    # loopback only: gloo otherwise picks the interface the host name resolves to, which a sandboxed
    # runner may not route
    env = {**os.environ, 'GLOO_SOCKET_IFNAME': 'lo', 'MASTER_ADDR': '127.0.0.1'}
    return subprocess.run([console_script('torchrun'), '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
                           '--master_port', str(_free_port()), str(HERE / 'ddp_toy_train.py'), str(run_dir)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_torchrun_two_processes_gloo(tmp_path):
    run_dir = tmp_path / 'first'
    r = _launch(run_dir)
    if r.returncode != 0 and 'Signal 6 (SIGABRT)' in r.stderr:
        # a worker killed by the C++ runtime while gloo connected has been seen once on a CI machine; a second
        # launch in a fresh folder tells that apart from a failure of the training code, which repeats
        print('first launch aborted, launching again:\n' + r.stderr[-1500:])
        run_dir = tmp_path / 'second'
        r = _launch(run_dir)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = [json.loads(l) for l in (run_dir / 'log.jsonl').read_text().splitlines()]
    assert len(log) == 2, 'rank 0 alone writes one line per epoch'
    assert [r['samples'] for r in log] == [128, 128], 'the epoch record covers both processes\' shards'
    state = read_checkpoint(run_dir / 'last.pt')
    assert state['epoch'] == 1
    # the participation counts were summed over both processes before U was chosen: at every epoch end each rank's
    # trackers hold all 128 selections (64 without the all-reduce), and both ranks close the epoch with the same p,
    # the one rank 0 saved
    seen = [json.loads((run_dir / f'participation_rank{r}.json').read_text()) for r in (0, 1)]
    assert [[e['counted'] for e in s] for s in seen] == [[128] * 4] * 2, 'two aspects x two epochs, each over both shards'
    assert seen[0] == seen[1]
    saved = [p for a in ('F', 'C') for p in state['trackers'][a]['history']]
    assert sorted(map(tuple, saved)) == sorted(tuple(e['participation']) for e in seen[0])

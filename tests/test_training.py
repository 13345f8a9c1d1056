"""Training across processes: torchrun with 2 CPU processes on the gloo backend."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from mmp_repro.training import ToyData, ToyMMP, TrainConfig, fit, half_mask, read_checkpoint

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


def test_torchrun_resumes_to_the_single_process_weights(tmp_path):
    # the toy run above stopped after one epoch and resumed; a batch of 16 is split 8 + 8 over the two processes, so
    # one process with batch 16 on the same order must reach the same weights
    r = _launch(tmp_path / 'ddp')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    torch.manual_seed(0)
    # fp32: bf16 rounds the two shards' sums differently from one batch's, which would hide the arithmetic checked here
    cfg = TrainConfig(epochs=2, batch_size=16, lr=3e-3, aspects=('F', 'C'), seed=0, cpu_bf16=False)
    fit(ToyMMP(), ToyData(), cfg, tmp_path / 'one', half_mask, device='cpu', progress=False)
    ddp, one = read_checkpoint(tmp_path / 'ddp' / 'last.pt')['model'], read_checkpoint(tmp_path / 'one' / 'last.pt')['model']
    assert ddp.keys() == one.keys()
    for k in one: torch.testing.assert_close(ddp[k], one[k], rtol=1e-4, atol=1e-5, msg=k)


def _cli(*argv, cwd=None, torchrun=False):
    env = {**os.environ, 'GLOO_SOCKET_IFNAME': 'lo', 'MASTER_ADDR': '127.0.0.1'}
    def command():
        return ([console_script('torchrun'), '--nproc_per_node', '2', '--master_addr', '127.0.0.1', '--master_port',
                 str(_free_port()), '-m', 'mmp_repro'] if torchrun else [console_script('mmp_repro')]) + list(argv)
    r = subprocess.run(command(), capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    if torchrun and r.returncode != 0 and any(m in r.stderr for m in ('Signal 6 (SIGABRT)', 'address already in use')):
        # the launch itself failed (see the toy test): once more on a new port; a failure of the training code repeats
        print('torchrun launch failed, launching again:\n' + r.stderr[-1500:])
        r = subprocess.run(command(), capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    return r


def test_torchrun_trains_the_street_as_one_process(tmp_path):
    # the real entry point: `torchrun -m mmp_repro train` on the street's smoke preset, against `mmp_repro train`
    runs = {}
    for name in ('one', 'two'):
        run = tmp_path / name
        # fp32 (--amp off): the comparison below is to 1e-5, finer than bf16 rounds
        r = _cli('extract', '--dataset', 'street', '--scale', 'smoke', '--epochs', '2', '--run-dir', str(run),
                 '--cache-root', str(tmp_path / 'cache'), '--amp', 'off', '--quiet', '--no-progress')
        assert r.returncode == 0, r.stderr[-3000:]
        r = _cli('train', '--run-dir', str(run), '--cache-root', str(tmp_path / 'cache'), '--no-progress',
                 cwd=tmp_path, torchrun=name == 'two')
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert len(r.stdout.strip().splitlines()) == 1, 'one JSON result, from rank 0 alone'
        runs[name] = [json.loads(l) for l in (run / 'model' / 'log.jsonl').read_text().splitlines()]
    one, two = runs['one'], runs['two']
    assert len(two) == 2 and [e['samples'] for e in two] == [e['samples'] for e in one]
    # the nearest-predictor selections of each epoch, summed over both processes, are the single process's: without
    # the all-reduce of the trackers rank 0 would log only its own half
    for a in 'FOC':
        assert [e[f'selections_{a}'] for e in two] == [e[f'selections_{a}'] for e in one], a
        assert [sum(e[f'selections_{a}']) for e in two] == [e['samples'] for e in two]
        for e1, e2 in zip(one, two): assert abs(e1[f'loss_{a}'] - e2[f'loss_{a}']) < 1e-5, (a, e1[f'loss_{a}'], e2[f'loss_{a}'])

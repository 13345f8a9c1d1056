"""Train the toy MMP model under torchrun (gloo backend, CPU): `torchrun --nproc_per_node 2 ddp_toy_train.py RUN_DIR`.

It trains one epoch, then resumes from the checkpoint for the second, as a restarted job would.

Each rank also writes `participation_rank<r>.json`: for every epoch end, how many nearest-predictor selections its
trackers had counted and the participation they closed the epoch with. The test reads them to check that the counts
were summed over both processes before U was chosen."""
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from mmp_repro import losses
from mmp_repro.training import ToyData, ToyMMP, TrainConfig, fit, half_mask

SEEN: list[dict] = []
_end_epoch = losses.ParticipationTracker.end_epoch


def _recording_end_epoch(self):
    counted = int(self.counts.sum())  # after the all-reduce: the whole epoch's selections, not this rank's shard
    p = _end_epoch(self)
    SEEN.append({'counted': counted, 'participation': [float(v) for v in p]})
    return p


if __name__ == '__main__':
    dist.init_process_group('gloo')
    losses.ParticipationTracker.end_epoch = _recording_end_epoch
    torch.manual_seed(0)
    # fp32: bf16 rounds the two shards' sums differently from one batch's, which would hide the arithmetic checked here
    cfg = TrainConfig(epochs=2, batch_size=16, lr=3e-3, aspects=('F', 'C'), seed=0, cpu_bf16=False)
    model = ToyMMP()
    # one epoch, then a resume from last.pt for the second: the test compares the result with one uninterrupted
    # single-process run
    fit(model, ToyData(), cfg, sys.argv[1], half_mask, device='cpu', progress=False, max_epochs=1)
    fit(ToyMMP(), ToyData(), cfg, sys.argv[1], half_mask, device='cpu', progress=False)
    Path(sys.argv[1], f'participation_rank{dist.get_rank()}.json').write_text(json.dumps(SEEN))
    dist.barrier()
    dist.destroy_process_group()

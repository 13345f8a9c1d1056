"""Train the toy MMP model under torchrun (gloo backend, CPU): `torchrun --nproc_per_node 2 ddp_toy_train.py RUN_DIR`."""
import sys

import torch
import torch.distributed as dist

from mmp_repro.training import ToyData, ToyMMP, TrainConfig, fit, half_mask

if __name__ == '__main__':
    dist.init_process_group('gloo')
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=3e-3, aspects=('F', 'C'), seed=0)
    fit(ToyMMP(), ToyData(), cfg, sys.argv[1], half_mask, device='cpu', progress=False)
    dist.barrier()
    dist.destroy_process_group()

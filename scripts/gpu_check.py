"""The GPU check of `scripts/gpu_check.sh`: the paper preset's training and inference speed on one CUDA device, one
epoch of street training at the paper's width through the real pipeline, and the nccl path of multi-GPU training.

Prints one line per measurement and, last, one JSON object with every number (also written to $OUT/gpu_check.json or
./gpu_check.json). Timings are medians of timed calls after warm-up calls, with the device synchronised."""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from mmp_repro.networks import MMPAMS, aspect_loss_sum, net_config, random_batch

RESULT: dict = {}


def say(*a):
    print(*a, flush=True)


def timed(fn, n: int = 7, warmup: int = 3) -> float:
    "Median seconds of `fn()` over `n` calls after `warmup` calls, the device synchronised around each."
    for _ in range(warmup): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def matmul_tflops(dtype, n: int = 8192) -> float:
    a, b = torch.randn(n, n, device='cuda', dtype=dtype), torch.randn(n, n, device='cuda', dtype=dtype)
    return 2 * n ** 3 / timed(lambda: a @ b, n=10) / 1e12


def step_fn(cfg, batch: int, dtype, channels_last: bool, compile_: bool):
    "One training step (forward, NN losses, backward, Adam) of the paper's network, as `fit` runs it."
    torch.manual_seed(0)
    model = MMPAMS(cfg).cuda().train()
    data = {k: v.cuda() for k, v in random_batch(cfg, batch).items()}
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        data['x_mp'] = data['x_mp'].contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    run = torch.compile(model) if compile_ else model
    scaler = torch.amp.GradScaler('cuda') if dtype == torch.float16 else None

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast('cuda', dtype=dtype or torch.float32, enabled=dtype is not None):
            preds = run(data['x_mp'])
        loss = aspect_loss_sum({a: p.float() for a, p in preds.items()}, data)
        if scaler is not None: scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        else: loss.backward(); opt.step()
    return step


def infer_fn(cfg, batch: int, dtype, channels_last: bool, graph: bool):
    "Scoring the objects of one frame: a no-grad forward of `batch` crops (optionally replayed as a CUDA graph)."
    torch.manual_seed(0)
    model = MMPAMS(cfg).cuda().eval()
    x = torch.rand(batch, cfg.in_channels, cfg.crop_size, cfg.crop_size, device='cuda')
    if channels_last:
        model = model.to(memory_format=torch.channels_last); x = x.contiguous(memory_format=torch.channels_last)

    def fwd():
        with torch.no_grad(), torch.autocast('cuda', dtype=dtype or torch.float32, enabled=dtype is not None):
            return model(x)
    if not graph: return fwd
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3): fwd()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g): fwd()
    return g.replay


def network_speed(budget_s: float) -> None:
    cfg = net_config('paper')
    B = 64
    say(f'## paper preset (crop {cfg.crop_size}, width {cfg.width}, n={cfg.n_preds}), training batch {B}'
        + (' (compiled)' if budget_s > 0 else ''))
    rows = [('fp32', None, False, False), ('fp32 channels-last', None, True, False), ('fp16 amp', torch.float16, False, False),
            ('fp16 amp channels-last', torch.float16, True, False), ('bf16 amp channels-last', torch.bfloat16, True, False)]
    if budget_s > 0: rows = [('bf16 amp channels-last compiled', torch.bfloat16, True, True)]  # last: compiling takes a while
    RESULT.setdefault('train_samples_per_s', {})
    for name, dtype, cl, comp in rows:
        try:
            t = timed(step_fn(cfg, B, dtype, cl, comp))
            RESULT['train_samples_per_s'][name] = round(B / t, 1)
            say(f'{name:34s} train {B / t:9.1f} samples/s ({1e3 * t:.1f} ms/step)')
        except Exception as e:  # a variant that does not run here is reported, the others still are
            say(f'{name:34s} failed: {type(e).__name__}: {str(e)[:200]}')
    if budget_s > 0: return
    say('## inference of one frame of 6 objects (the paper: 18 ms per Avenue frame on a Titan X)')
    RESULT['infer_ms_per_frame_6_objects'] = {}
    for name, dtype, cl, graph in [('fp32', None, False, False), ('fp32 channels-last', None, True, False),
                                   ('bf16 channels-last', torch.bfloat16, True, False), ('fp32 CUDA graph', None, False, True),
                                   ('bf16 channels-last CUDA graph', torch.bfloat16, True, True)]:
        try:
            t = timed(infer_fn(cfg, 6, dtype, cl, graph), n=50, warmup=5)
            RESULT['infer_ms_per_frame_6_objects'][name] = round(1e3 * t, 3)
            say(f'{name:34s} {1e3 * t:8.2f} ms per frame')
        except Exception as e:
            say(f'{name:34s} failed: {type(e).__name__}: {str(e)[:200]}')


def street_epoch(tmp: Path) -> None:
    "One epoch of the real pipeline on the quick street at the paper's network width (crop 64), AMP and channels-last."
    from mmp_repro.pipeline import PipelineConfig, extract_stage, train_stage
    net = dict(crop_size=64, width=1.0, state_dim=256, fc_width=256)
    cfg = PipelineConfig.for_scale('quick', dataset='street', detector='oracle', net=net, train={'epochs': 1}, location=False)
    say('## one epoch of street training at the paper width (quick street, crop 64, width 1, batch 64)')
    t = time.perf_counter()
    train, _, _ = extract_stage(cfg, cache_root=tmp / 'objects', progress=False)
    n = sum(len(s) for s in train)
    say(f'extraction (street generated, {cfg.objects.flow} flow, crops): {time.perf_counter() - t:.1f} s, {n} training objects')
    t = time.perf_counter()
    train_stage(cfg, train, tmp / 'run', 'cuda', progress=True)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t
    RESULT['street_epoch'] = {'objects': n, 'seconds': round(dt, 2), 'samples_per_s': round(n / dt, 1),
                              'amp': cfg.train.amp_dtype if cfg.train.amp else 'off', 'channels_last': cfg.train.channels_last}
    say(f'one epoch: {dt:.1f} s, {n / dt:.1f} samples/s (first epoch: includes cuDNN warm-up)')


def nccl_path(tmp: Path) -> None:
    "fit inside an nccl process group (one rank): DDP on the device, the trackers and sums all-reduced on the GPU."
    import torch.distributed as dist
    from mmp_repro.training import ToyData, ToyMMP, TrainConfig, fit, half_mask, read_checkpoint
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT='29533')
    dist.init_process_group('nccl', rank=0, world_size=1)
    try:
        cfg = TrainConfig(epochs=2, batch_size=16, lr=3e-3, aspects=('F', 'C'), seed=0)
        torch.manual_seed(0)
        fit(ToyMMP(), ToyData(), cfg, tmp / 'nccl', half_mask, device='cuda', progress=False)
        log = read_checkpoint(tmp / 'nccl' / 'last.pt')['log']
        RESULT['nccl_fit'] = {'epochs': len(log), 'samples': [r['samples'] for r in log],
                              'selections_F': [r['selections_F'] for r in log]}
        say(f"## nccl: fit in a process group ran {len(log)} epochs, samples {RESULT['nccl_fit']['samples']}, "
            f"selections F {RESULT['nccl_fit']['selections_F']}")
    finally: dist.destroy_process_group()


def main() -> int:
    if not torch.cuda.is_available():
        say('gpu_check: no CUDA device here; this check is for a machine with a GPU'); return 1
    t0 = time.perf_counter()
    p = torch.cuda.get_device_properties(0)
    RESULT.update(device=p.name, torch=torch.__version__, memory_gib=round(p.total_memory / 2 ** 30, 1))
    say(f'# {p.name}, {RESULT["memory_gib"]} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}')
    torch.backends.cuda.matmul.allow_tf32 = False; torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32
    RESULT['matmul_tflops'] = {'fp32': round(matmul_tflops(torch.float32), 1), 'bf16': round(matmul_tflops(torch.bfloat16), 1)}
    say(f"matmul: fp32 {RESULT['matmul_tflops']['fp32']} TFLOP/s, bf16 {RESULT['matmul_tflops']['bf16']} TFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # torch.compile last: its compile time is the least predictable part of the five minutes
        for part in (lambda: network_speed(budget_s=0), lambda: street_epoch(tmp), lambda: nccl_path(tmp),
                     lambda: network_speed(budget_s=1) if time.perf_counter() - t0 < 150 else say('compiled step skipped (time)')):
            try: part()
            except Exception as e:
                say(f'failed: {type(e).__name__}: {e}')
                RESULT.setdefault('failures', []).append(f'{type(e).__name__}: {str(e)[:300]}')
    RESULT['wall_s'] = round(time.perf_counter() - t0, 1)
    out = Path(os.environ.get('OUT') or '.') / 'gpu_check.json'
    out.write_text(json.dumps(RESULT, indent=1))
    say(json.dumps(RESULT))
    return 1 if RESULT.get('failures') else 0


if __name__ == '__main__':
    sys.exit(main())

"""DistributedDataParallel training on CPU with gloo: 2 real processes on real Cityscapes pairs."""
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from asapnet import DiscriminatorConfig, TrainConfig, asap_preset, create_model
from asapnet.data import LabelPhotoDataset, cityscapes_pairs
from asapnet.training.trainer import Trainer
from asapnet.training.loop import train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out, data_root, batch, steps):
    torch.manual_seed(0)
    pairs = cityscapes_pairs(data_root / "cityscapes_samples", "train")[:2]
    ds = LabelPhotoDataset(pairs, 35, True, load_size=(64, 128), flip=False)
    cfg = asap_preset("tiny", in_channels=36)
    tr = Trainer(create_model("asap", cfg=cfg), "asap", cfg.to_dict(), DiscriminatorConfig(in_channels=39, ndf=8, n_layers=3),
                 TrainConfig(steps=steps, batch_size=batch, crop=None, shuffle=False, lambda_vgg=0, lambda_l1=1.0,
                             checkpoint_every=1000, sample_every=1000, log_every=1000),
                 out, num_classes=35)
    train(tr, ds, progress=False)
    tensors = {f"G.{k}": v for k, v in tr.G.named_parameters()}
    tensors.update({f"D.{k}": v for k, v in tr.D.named_parameters()})
    tensors.update({f"gradG.{k}": v.grad for k, v in tr.G.named_parameters() if v.grad is not None})
    tensors.update({f"gradD.{k}": v.grad for k, v in tr.D.named_parameters() if v.grad is not None})
    return {k: v.detach().clone().contiguous() for k, v in tensors.items()}


def _worker(rank, world, port, tmp, data_root, batch, steps):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        save_file(_run(tmp / "ddp", data_root, batch, steps), str(tmp / f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), tmp, data_root, 1, 1), nprocs=2, join=True)
    return [load_file(str(tmp / f"rank{r}.safetensors")) for r in range(2)]


def test_parameters_identical_on_both_ranks_after_real_steps(two_ranks):
    r0, r1 = two_ranks
    params = [k for k in r0 if k.startswith(("G.", "D."))]
    assert params and all(torch.equal(r0[k], r1[k]) for k in params)


def test_two_processes_batch_1_match_one_process_batch_2(two_ranks, tmp_path, data_root):
    single = _run(tmp_path / "single", data_root, batch=2, steps=1)
    r0 = two_ranks[0]
    grads = [k for k in single if k.startswith("grad")]
    assert grads and set(grads) == {k for k in r0 if k.startswith("grad")}
    for k in grads:  # DDP-averaged gradients of 2 x batch 1 == gradients of batch 2, up to fp32 summation order
        rel = (r0[k] - single[k]).norm() / single[k].norm().clamp_min(1e-12)
        assert rel < 1e-4, (k, rel)


def test_torchrun_cli_two_processes(tmp_path, data_root):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_port", str(_free_port()), "-m", "asapnet", "train", "--data", str(data_root / "cityscapes_samples"),
           "--preset", "tiny", "--load-size", "64x128", "--crop", "32x64", "--steps", "2", "--ndf", "8",
           "--n-layers-d", "3", "--no-vgg", "--out", str(out), "--quiet", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    if r.returncode != 0 and "Signal 6 (SIGABRT)" in r.stderr:
        # gloo has aborted a worker once in ~20 CI runs on this 2-core machine (not reproduced in 18
        # direct runs, with or without load); one fresh try keeps a real failure red and shows both
        print("first torchrun attempt aborted; stderr head:\n" + r.stderr[:3000], file=sys.stderr)
        cmd[cmd.index("--master_port") + 1] = str(_free_port())
        r = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[:3000] + "\n...\n" + r.stderr[-2000:]
    assert r.stderr.count("done: step 2") == 1  # rank 0 only (log messages: stderr)
    assert (out / "state.safetensors").is_file() and (out / "generator.safetensors").is_file()

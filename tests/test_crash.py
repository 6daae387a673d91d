"""Crash-safe training: SIGKILL a real `asapnet train` process, resume, and no pickle anywhere."""
import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import asapnet
from asapnet.checkpoint import load_generator, load_tensors
from asapnet.training.run_dir import GENERATOR_FILE, STATE_FILE

EXTRA_STEPS = 2  # steps the resumed run trains past the checkpoint the victim was killed after
VICTIM_STEPS = 100_000  # never reached: the victim is always killed mid-way
PACKAGE = Path(asapnet.__file__).parent


def _train_cmd(data_root, out, steps, *extra):
    return [sys.executable, "-m", "asapnet", "train", "--data", str(data_root / "cityscapes_samples"),
            "--preset", "tiny", "--load-size", "64x128", "--crop", "32x64", "--ndf", "8", "--n-layers-d", "3",
            "--no-vgg", "--checkpoint-every", "1", "--sample-every", "1000", "--steps", str(steps), "--threads", "1",
            "--quiet", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def crashed_and_resumed(data_root, tmp_path_factory):
    """Start a victim run that cannot finish (``VICTIM_STEPS``), wait until it has written its
    first checkpoint (both files; atomic writes: a file appears complete), SIGKILL it at whatever it is doing
    then (often writing a later checkpoint), inspect what it left, resume it for
    ``EXTRA_STEPS`` more steps, and train an uninterrupted reference run to the same step."""
    root = tmp_path_factory.mktemp("crash")
    victim, ref = root / "victim", root / "ref"
    p = subprocess.Popen(_train_cmd(data_root, victim, VICTIM_STEPS), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240  # a hang guard for the wait, not a speed requirement
        written = lambda: (victim / STATE_FILE).exists() and (victim / GENERATOR_FILE).exists()  # noqa: E731
        while not written() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        alive_with_checkpoint = p.poll() is None and written()
        p.send_signal(signal.SIGKILL)
        out = p.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert alive_with_checkpoint, f"the victim died or wrote no checkpoint before the kill: {out[-2000:]}"
    after_kill = {"returncode": p.returncode, "files": sorted(f.name for f in victim.iterdir()),
                  "state": load_tensors(victim / STATE_FILE)}  # must not be truncated
    steps = int(after_kill["state"][1]["step"]) + EXTRA_STEPS
    p_ref = subprocess.Popen(_train_cmd(data_root, ref, steps), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    resumed = subprocess.run(_train_cmd(data_root, victim, steps, "--resume"), capture_output=True, text=True,
                             timeout=300)
    ref_out = p_ref.communicate(timeout=300)[0].decode(errors="replace")
    assert p_ref.returncode == 0, ref_out[-2000:]
    return {"dir": victim, "ref": ref, "kill_output": out, "after_kill": after_kill, "resumed": resumed,
            "steps": steps}


def test_sigkill_leaves_a_loadable_checkpoint_and_resume_completes(crashed_and_resumed):
    r = crashed_and_resumed
    ak = r["after_kill"]
    assert ak["returncode"] == -signal.SIGKILL, f"the run was not killed mid-way: {r['kill_output'][-2000:]}"
    tensors, meta = ak["state"]
    step = int(meta["step"])
    assert 1 <= step == r["steps"] - EXTRA_STEPS
    assert {"optG", "optD", "rng"} <= set(meta) and "rng.torch" in tensors
    assert any(k.startswith("G.") for k in tensors) and any(k.startswith("optD.") for k in tensors)
    assert {STATE_FILE, GENERATOR_FILE} <= set(ak["files"])
    res = r["resumed"]
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"done: step {r['steps']}" in res.stderr  # progress and summary lines go to stderr
    _, final = load_tensors(r["dir"] / STATE_FILE)
    assert final["step"] == r["steps"]
    model, gmeta = load_generator(r["dir"] / GENERATOR_FILE)
    assert gmeta["step"] == r["steps"] and isinstance(model, torch.nn.Module)
    with torch.no_grad():
        y = model(torch.zeros(1, 36, 20, 24).index_fill_(1, torch.tensor([7]), 1.0))
    assert y.shape == (1, 3, 20, 24)


def test_resumed_run_equals_uninterrupted_run(crashed_and_resumed):
    r = crashed_and_resumed
    assert r["resumed"].returncode == 0
    a, meta_a = load_tensors(r["dir"] / STATE_FILE)
    b, meta_b = load_tensors(r["ref"] / STATE_FILE)
    assert meta_a["step"] == meta_b["step"] == r["steps"]
    g = [k for k in b if k.startswith("G.")]
    assert max((a[k] - b[k]).abs().max().item() for k in g) == 0


# ---------------------------------------------------------------------------------------------
# no pickle on any checkpoint loading path
# ---------------------------------------------------------------------------------------------

_PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "joblib", "shelve", "marshal", "cloudpickle"}


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _unpickling_calls(files, root: Path):
    """Imports of pickle-like modules, torch.load without weights_only=True, torch.jit.load and
    np.load with allow_pickle, found in the syntax trees of ``files``."""
    offences = []
    for f in files:
        tree = ast.parse(f.read_text(), str(f))
        for node in ast.walk(tree):
            where = f"{f.relative_to(root)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                offences += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in _PICKLE_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _PICKLE_MODULES:
                offences.append(f"{where} from {node.module} import")
            elif isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names):
                offences.append(f"{where} from torch import load (cannot check weights_only)")
            elif isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name == "torch.load":
                    wo = _kw(node, "weights_only")
                    if not (isinstance(wo, ast.Constant) and wo.value is True):
                        offences.append(f"{where} torch.load without weights_only=True")
                elif name in ("torch.jit.load", "torch.package.PackageImporter"):
                    offences.append(f"{where} {name}")
                elif name.endswith(("np.load", "numpy.load")):
                    ap = _kw(node, "allow_pickle")
                    if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                        offences.append(f"{where} np.load with allow_pickle")
    return offences


def test_package_source_never_unpickles():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    assert _unpickling_calls(files, PACKAGE) == []


def test_unpickling_detector_flags_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nimport torch, numpy as np\nfrom torch import load\n"
                   "a = torch.load('x.pt')\nb = torch.load('x.pt', weights_only=False)\n"
                   "c = np.load('x.npy', allow_pickle=True)\nd = torch.jit.load('m.pt')\n")
    good = tmp_path / "good.py"
    good.write_text("import torch, numpy as np\na = torch.load('x.pt', weights_only=True)\nb = np.load('x.npy')\n")
    found = _unpickling_calls([bad], tmp_path)
    assert [o.split(" ", 1)[0] for o in found] == [f"bad.py:{i}" for i in (1, 3, 4, 5, 6, 7)], found
    assert _unpickling_calls([good], tmp_path) == []


def test_pickle_payload_given_as_checkpoint_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "generator.safetensors"
    torch.save({"G.weight": Payload()}, evil)  # a real pickle-based .pt under a checkpoint name
    with pytest.raises(ValueError, match="not a valid safetensors checkpoint"):
        load_generator(evil)
    state = tmp_path / STATE_FILE
    state.write_bytes(evil.read_bytes())
    with pytest.raises(ValueError, match="not a valid safetensors checkpoint"):
        load_tensors(state)
    assert not marker.exists()

"""Training runs cannot be lost: an existing run folder is refused without --resume/--overwrite,
SIGINT/SIGTERM stop after the running step with a checkpoint (exit 130/143, no traceback), and
metrics.jsonl holds every step once after kill + resume."""
import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from asapnet.checkpoint import load_generator, load_tensors
from asapnet.cli import main
from asapnet.training.run_dir import (GENERATOR_FILE, STATE_FILE, TrainingInterrupted, drop_metrics_after,
                                      prepare_run_dir)
from asapnet.training.trainer import Trainer
from asapnet.training.loop import train

FIRST_CHECKPOINT = 2  # --checkpoint-every of the runs below


def _train_cmd(data_root, out, *extra, steps=3, checkpoint_every=1):
    return [sys.executable, "-m", "asapnet", "train", "--data", str(data_root / "cityscapes_samples"),
            "--preset", "tiny", "--load-size", "64x128", "--crop", "32x64", "--ndf", "8", "--n-layers-d", "3",
            "--no-vgg", "--checkpoint-every", str(checkpoint_every), "--sample-every", "1000", "--steps", str(steps),
            "--threads", "1", "--quiet", "--out", str(out), *extra]


def _run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _step(run_dir):
    return int(load_tensors(run_dir / STATE_FILE)[1]["step"])


def _metric_steps(run_dir):
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(data_root, tmp_path_factory):
    """A finished 3-step run (checkpoint every step) made by the CLI."""
    out = tmp_path_factory.mktemp("safety") / "run"
    r = _run(_train_cmd(data_root, out))
    assert r.returncode == 0, r.stderr[-2000:]
    return out


# -- refusing a run folder ---------------------------------------------------------------------


def test_cli_refuses_a_run_folder_without_resume_or_overwrite(data_root, finished_run):
    before = (finished_run / STATE_FILE).read_bytes()
    r = _run(_train_cmd(data_root, finished_run, steps=5))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(finished_run) in lines[0] and "--resume" in lines[0] and "--overwrite" in lines[0]
    assert (finished_run / STATE_FILE).read_bytes() == before  # untouched, byte for byte
    assert _step(finished_run) == 3


@pytest.mark.parametrize("marker", [STATE_FILE, GENERATOR_FILE, "run.json"])
def test_each_run_file_marks_a_run_folder(tmp_path, marker):
    (tmp_path / marker).write_text("x")
    with pytest.raises(ValueError, match=f"{tmp_path}.*--resume.*--overwrite"):
        prepare_run_dir(tmp_path)
    prepare_run_dir(tmp_path, resume=True)  # fine, nothing deleted
    assert (tmp_path / marker).exists()
    with pytest.raises(ValueError, match="not both"):
        prepare_run_dir(tmp_path, resume=True, overwrite=True)
    prepare_run_dir(tmp_path / "new")  # missing and unrelated folders are fine
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    prepare_run_dir(tmp_path / "other")


def test_overwrite_deletes_only_the_runs_own_files(tmp_path):
    for name in (STATE_FILE, GENERATOR_FILE, GENERATOR_FILE + ".json", "run.json", "metrics.jsonl",
                 f".{STATE_FILE}.abc.tmp", "notes.txt", "segmenter.safetensors"):
        (tmp_path / name).write_text("x")
    for d in ("samples", "tb", "figures"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f").write_text("x")
    prepare_run_dir(tmp_path, overwrite=True, clear=False)  # a non-main process only checks
    assert (tmp_path / STATE_FILE).exists()
    prepare_run_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "notes.txt", "segmenter.safetensors"]


@pytest.mark.parametrize("task", [["--task", "denoise", "--model", "dncnn"],
                                  ["--task", "deblur", "--model", "deblurgan", "--ngf", "4", "--n-blocks", "1"]])
def test_denoise_and_deblur_training_refuse_a_run_folder(tmp_path, capsys, task):
    (tmp_path / "run.json").write_text("{}")
    assert main(["train", *task, "--steps", "1", "--quiet", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0] and "--overwrite" in err[0]
    assert (tmp_path / "run.json").read_text() == "{}"


def test_overwrite_starts_again_at_step_0(data_root, finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)  # a copy of the finished 3-step run plus a file of the user's
    (run / "notes.txt").write_text("mine")
    assert _step(run) == 3 and _metric_steps(run) == [1, 2, 3]
    assert [f.name for f in (run / "samples").iterdir()] == ["step_000003.png"]
    r = _run(_train_cmd(data_root, run, "--overwrite", steps=1))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "done: step 1" in r.stderr  # resuming would have found step 3 >= 1 and not trained at all
    assert _step(run) == 1 and load_generator(run / GENERATOR_FILE)[1]["step"] == 1
    assert _metric_steps(run) == [1]
    assert [f.name for f in (run / "samples").iterdir()] == ["step_000001.png"]
    assert (run / "notes.txt").read_text() == "mine"


# -- SIGINT / SIGTERM --------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_and_resume_continues(data_root, tmp_path, sig):
    run = tmp_path / "run"
    # SIGINT reset to the default in the child: a shell may start background jobs with it ignored
    p = subprocess.Popen(_train_cmd(data_root, run, steps=100000, checkpoint_every=FIRST_CHECKPOINT),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not (run / STATE_FILE).exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p.poll() is None, p.communicate()[1][-2000:]
        assert (run / STATE_FILE).exists(), "no first checkpoint"
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    msgs = [line for line in err.splitlines() if line.startswith("interrupted at step ")]
    assert len(msgs) == 1, err[-2000:]
    step = _step(run)
    assert step >= FIRST_CHECKPOINT
    assert msgs[0] == f"interrupted at step {step}, saved to {run / STATE_FILE}"
    assert load_generator(run / GENERATOR_FILE)[1]["step"] == step
    assert "done:" not in out + err

    # what a run SIGKILLed between its metrics line and its checkpoint leaves: rows after the
    # saved step, the last one torn; resume drops them, so no step is logged twice
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": step + 1}) + "\n" + json.dumps({"step": step + 2}) + "\n" + '{"step": 9')
    r = _run(_train_cmd(data_root, run, "--resume", steps=step + 2, checkpoint_every=FIRST_CHECKPOINT))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"done: step {step + 2}" in r.stderr
    assert _step(run) == step + 2
    steps = _metric_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == step + 2
    assert all(s % FIRST_CHECKPOINT == 0 or s == step + 2 for s in steps)  # the stale step + 1 row is gone


def _tiny_trainer(tmp_path, data_root, steps):
    from asapnet import DiscriminatorConfig, TrainConfig, asap_preset, create_model
    from asapnet.data import LabelPhotoDataset, cityscapes_pairs

    pairs = cityscapes_pairs(data_root / "cityscapes_samples", "train")[:2]
    ds = LabelPhotoDataset(pairs, 35, True, load_size=(64, 128), flip=True)
    cfg = asap_preset("tiny", in_channels=36)
    tcfg = TrainConfig(steps=steps, crop=(32, 64), lambda_vgg=0, checkpoint_every=100, sample_every=100, log_every=100)
    tr = Trainer(create_model("asap", cfg=cfg), "asap", cfg.to_dict(), DiscriminatorConfig(in_channels=39, ndf=8,
                 n_layers=3), tcfg, tmp_path / "run", num_classes=35)
    return tr, ds


def _send(sig):
    signal.pthread_kill(threading.main_thread().ident, sig)


def test_signal_between_checkpoints_writes_one_and_handlers_are_restored(tmp_path, data_root):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    tr, ds = _tiny_trainer(tmp_path, data_root, steps=5)
    train(tr, ds, progress=False)  # a normal run leaves the handlers as they were
    assert {s: signal.getsignal(s) for s in before} == before

    tr, ds = _tiny_trainer(tmp_path, data_root, steps=5)
    with pytest.raises(TrainingInterrupted) as e:
        train(tr, ds, progress=False, on_step=lambda s, logs: _send(signal.SIGTERM) if s == 2 else None)
    assert e.value.code == 143 and e.value.step == 2 and e.value.path == tmp_path / "run" / STATE_FILE
    assert _step(tmp_path / "run") == 2  # not a checkpoint step (every 100): written for the signal
    assert {s: signal.getsignal(s) for s in before} == before


def test_second_signal_stops_at_once_without_a_checkpoint(tmp_path, data_root):
    before = signal.getsignal(signal.SIGINT)
    tr, ds = _tiny_trainer(tmp_path, data_root, steps=5)

    def twice(step, logs):
        _send(signal.SIGINT)
        _send(signal.SIGINT)
        time.sleep(0.01)  # (the handlers run on the main thread at the next check)

    with pytest.raises(TrainingInterrupted) as e:
        train(tr, ds, progress=False, on_step=twice)
    assert e.value.code == 130 and e.value.step is None
    assert not (tmp_path / "run" / STATE_FILE).exists()
    assert signal.getsignal(signal.SIGINT) == before


# -- metrics.jsonl -----------------------------------------------------------------------------


def test_drop_metrics_after(tmp_path):
    path = tmp_path / "metrics.jsonl"
    drop_metrics_after(path, 3)  # no file: nothing to do
    assert not path.exists()
    path.write_text('{"step": 1, "a": 1}\n{"step": 2}\n{"note": "x"}\n{"step": 3}\n{"step": 4}\n{"step": 2')
    drop_metrics_after(path, 2)
    assert path.read_text() == '{"step": 1, "a": 1}\n{"step": 2}\n{"note": "x"}\n'
    mtime = path.stat().st_mtime_ns
    drop_metrics_after(path, 2)  # already consistent: not rewritten
    assert path.stat().st_mtime_ns == mtime

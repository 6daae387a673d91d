"""Mutation check: do the tests fail when the code they guard is broken on purpose?

    python scripts/mutation_check.py              # every mutation; markdown table on stdout
    python scripts/mutation_check.py --list       # the mutations and the tests each one runs
    python scripts/mutation_check.py --only hinge_g_sign,psnr_data_range_1 --no-baseline

The repository's ``src/``, ``tests/``, ``examples/`` and ``pyproject.toml`` are copied to a
temporary folder. Every mutation is one exact-string replacement in one source file of the copy
(the script stops with an error when the string is not there, so a mutation cannot silently
go stale when the source changes); then only that mutation's test files run in the copy, with
``PYTHONPATH=<copy>/src`` so that the tests (and the subprocesses they start) import the
mutated package; the script checks that with ``asapnet.__file__`` before every run. The file
is restored before the next mutation. A mutation is *killed* when some test fails, *survived*
when all pass. First, every distinct test selection runs once on the unmutated copy (the
baseline): a failure there makes every "killed" meaningless, so the script stops.

Exit status: 0 when every mutation is killed, 1 when one survived, 2 on a setup error
(a missing string, a failing baseline, the copy not being imported).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
COPIED = ("src", "tests", "examples", "pyproject.toml")
DATA_SUBDIR = "cityscapes_samples"


@dataclass
class Mutation:
    """Replace ``old`` by ``new`` in ``file`` (relative to src/asapnet); ``count``: how many
    occurrences the file must hold (all are replaced). ``tests``: pytest arguments (files, node
    ids, ``-k`` expressions), run from the copy's root."""

    name: str
    what: str
    file: str
    old: str
    new: str
    tests: List[str] = field(default_factory=list)
    count: int = 1


MUTATIONS: List[Mutation] = [
    Mutation("hinge_g_sign", "hinge_g_loss: -E[D(fake)] -> +E[D(fake)]", "losses/gan.py",
             "return sum(-f[-1].mean() for f in fake) / len(fake)",
             "return sum(f[-1].mean() for f in fake) / len(fake)",
             ["tests/test_known_values.py"]),
    Mutation("hinge_d_fake_sign", "hinge_d_loss: relu(1 + D(fake)) -> relu(1 - D(fake))", "losses/gan.py",
             "F.relu(1 + f[-1]).mean()", "F.relu(1 - f[-1]).mean()",
             ["tests/test_known_values.py"]),
    Mutation("feature_matching_sum_scales", "feature_matching_loss: sum over scales instead of the mean",
             "losses/gan.py", "            loss = loss + F.l1_loss(ff, rf.detach())\n    return loss / len(real)",
             "            loss = loss + F.l1_loss(ff, rf.detach())\n    return loss",
             ["tests/test_known_values.py"]),
    Mutation("psnr_scale_0_1", "psnr_ssim: to_255 maps [-1, 1] to [0, 1] (data_range stays 255)",
             "metrics/image.py", "return ((x.float() + 1) * 127.5).clamp(0, 255)",
             "return ((x.float() + 1) / 2).clamp(0, 255)",
             ["tests/test_known_values.py"]),
    Mutation("psnr_data_range_1", "psnr_ssim: data_range 1 on 0-255 images", "metrics/image.py",
             "data_range=255.0", "data_range=1.0", ["tests/test_known_values.py"], count=2),
    Mutation("pix2pixhd_resblock_no_instance_norm", "pix2pixHD residual block: InstanceNorm2d -> Identity",
             "models/pix2pixhd.py", "nn.InstanceNorm2d(dim, affine=False)", "nn.Identity()",
             ["tests/test_convert.py", "-k", "pix2pixhd"], count=2),
    Mutation("pix2pixhd_no_instance_norm", "pix2pixHD: every InstanceNorm2d -> Identity", "models/pix2pixhd.py",
             "nn.InstanceNorm2d(", "nn.Identity(", ["tests/test_convert.py", "-k", "pix2pixhd"], count=8),
    Mutation("pix2pixhd_resblock_zero_padding", "pix2pixHD residual block: ReflectionPad2d(1) -> ZeroPad2d(1)",
             "models/pix2pixhd.py", "nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3)",
             "nn.ZeroPad2d(1), nn.Conv2d(dim, dim, 3)",
             ["tests/test_convert.py", "-k", "pix2pixhd"], count=2),
    Mutation("pix2pixhd_zero_padding", "pix2pixHD: every ReflectionPad2d -> ZeroPad2d (zeros)", "models/pix2pixhd.py",
             "nn.ReflectionPad2d(", "nn.ZeroPad2d(", ["tests/test_convert.py", "-k", "pix2pixhd"], count=6),
    Mutation("spade_gamma_without_one", "SPADE: N(x) * (1 + gamma) -> N(x) * gamma", "models/spade.py",
             "self.param_free_norm(x) * (1 + self.mlp_gamma(actv))", "self.param_free_norm(x) * self.mlp_gamma(actv)",
             ["tests/test_convert.py", "-k", "spade"]),
    Mutation("spade_no_param_free_norm", "SPADE: the parameter-free norm removed (x * (1 + gamma) + beta)",
             "models/spade.py", "return self.param_free_norm(x) * (1 + self.mlp_gamma(actv))",
             "return x * (1 + self.mlp_gamma(actv))", ["tests/test_convert.py", "-k", "spade"]),
    Mutation("asap_lr_no_instance_norm", "ASAP LR stream: instance norm removed (affine scale/shift kept)",
             "models/lr_stream.py", "        return super().forward(x)",
             "        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1) if self.affine else x",
             ["tests/test_convert.py", "-k", "asap"]),
    Mutation("asap_bilinear_is_nearest", "ASAP param_upsampling='bilinear': all blend weight on the nearest corner",
             "models/hr_stream.py",
             "alpha = torch.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx], -1).reshape(T * T, 4)",
             "alpha = torch.stack([(fy < 0.5) * (fx < 0.5), (fy < 0.5) * (fx >= 0.5), (fy >= 0.5) * (fx < 0.5), "
             "(fy >= 0.5) * (fx >= 0.5)], -1).to(x.dtype).reshape(T * T, 4)",
             ["tests/test_param_upsampling.py"]),
    Mutation("hr_split_params_no_sqrt", "HRStream.split_params: 1/sqrt(c_in) weight scaling dropped",
             "models/hr_stream.py", "p[:, ws].reshape(-1, ci, co) * self.weight_gain(ci)", "p[:, ws].reshape(-1, ci, co)",
             ["tests/test_model.py", "-k", "hr_stream"]),
]


def die(msg: str) -> None:
    """Setup error: message on stderr, exit status 2."""
    print(f"mutation_check: {msg}", file=sys.stderr)
    sys.exit(2)


def find_data() -> Optional[Path]:
    """The shared data folder as tests/conftest.py finds it from the real repository (the copy
    lives elsewhere, so its conftest gets it through ASAPNET_DATA)."""
    for cand in (os.environ.get("ASAPNET_DATA"), REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if cand and (Path(cand) / DATA_SUBDIR).is_dir():
            return Path(cand).resolve()
    return None


def make_copy(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache", ".hypothesis")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def env_for(copy: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # no stale .pyc of a mutated file
    env.setdefault("OMP_NUM_THREADS", "1")
    data = find_data()
    if data is not None:
        env["ASAPNET_DATA"] = str(data)
    return env


def check_import(copy: Path, env: Dict[str, str], python: str) -> str:
    """asapnet.__file__ as the tests see it; exits 2 unless it lies in the copy."""
    r = subprocess.run([python, "-c", "import asapnet; print(asapnet.__file__)"], cwd=copy, env=env,
                       capture_output=True, text=True)
    where = r.stdout.strip()
    if r.returncode != 0 or not Path(where).resolve().is_relative_to((copy / "src").resolve()):
        die(f"the tests would not import the copy: asapnet.__file__ = {where!r} "
                 f"{r.stderr[-500:]}")
    return where


def run_pytest(copy: Path, env: Dict[str, str], python: str, args: Sequence[str], verbose: bool) -> tuple:
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *args]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
    secs = time.monotonic() - t0
    if verbose:
        print(r.stdout[-3000:], r.stderr[-2000:], file=sys.stderr)
    return r.returncode, secs, r.stdout + r.stderr


def apply(copy: Path, m: Mutation) -> str:
    """Mutate the copy; returns the original text. Exits 2 when ``m.old`` is not there ``m.count`` times."""
    path = copy / "src" / "asapnet" / m.file
    text = path.read_text()
    n = text.count(m.old)
    if n != m.count:
        die(f"{m.name}: expected {m.count} occurrence(s) of {m.old!r} in src/asapnet/{m.file}, "
                 f"found {n}: update the mutation to the current source")
    path.write_text(text.replace(m.old, m.new))
    return text


def validate_all(mutations: Sequence[Mutation]) -> None:
    """Every mutation's string is in the real source before anything runs (fail loudly, fail early)."""
    for m in mutations:
        text = (REPO / "src" / "asapnet" / m.file).read_text()
        n = text.count(m.old)
        if n != m.count:
            die(f"{m.name}: expected {m.count} occurrence(s) of {m.old!r} in "
                     f"src/asapnet/{m.file}, found {n}: update the mutation to the current source")


def table(rows: Sequence[tuple]) -> str:
    out = ["| mutation | tests run | killed/survived | seconds |", "|---|---|---|---|"]
    for m, tests, verdict, secs in rows:
        out.append(f"| `{m.name}`: {m.what} | `{' '.join(tests)}` | {verdict} | {secs:.0f} |")
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated mutation names")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs pytest (default: this one)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the tail of every pytest output")
    a = ap.parse_args(argv)
    mutations = MUTATIONS
    if a.only:
        names = a.only.split(",")
        unknown = set(names) - {m.name for m in MUTATIONS}
        if unknown:
            ap.error(f"unknown mutation(s) {sorted(unknown)}; --list shows them")
        mutations = [m for m in MUTATIONS if m.name in names]
    if a.list:
        for m in mutations:
            print(f"{m.name:30s} src/asapnet/{m.file}: {m.what}\n{'':30s} pytest {' '.join(m.tests)}")
        return 0
    validate_all(mutations)
    copy = Path(tempfile.mkdtemp(prefix="asapnet-mut-"))
    try:
        make_copy(copy)
        env = env_for(copy)
        where = check_import(copy, env, a.python)
        print(f"mutated copy: {copy} (tests import asapnet from {where}); data: {env.get('ASAPNET_DATA')}",
              file=sys.stderr)
        if not a.no_baseline:  # every distinct test selection once, unmutated
            for tests in dict.fromkeys(tuple(m.tests) for m in mutations):
                rc, secs, out = run_pytest(copy, env, a.python, tests, a.verbose)
                print(f"baseline (unmutated): pytest {' '.join(tests)} -> exit {rc} in {secs:.0f} s", file=sys.stderr)
                if rc != 0:
                    print(out[-4000:], file=sys.stderr)
                    die("the tests fail without any mutation: fix them first")
        rows = []
        for m in mutations:
            original = apply(copy, m)
            try:
                check_import(copy, env, a.python)
                rc, secs, out = run_pytest(copy, env, a.python, m.tests, a.verbose)
            finally:
                (copy / "src" / "asapnet" / m.file).write_text(original)
            failed = [line.split(" ", 1)[1].split(" - ")[0].split("::")[-1]
                      for line in out.splitlines() if line.startswith(("FAILED ", "ERROR "))]
            if rc == 0:
                verdict = "**survived**"
            elif rc == 1:  # a test failed: the first one is named
                verdict = f"killed by `{failed[0]}`" if failed else "killed"
            elif rc == 2:  # collection / import error caused by the mutation
                verdict = "killed (collection error)"
            else:
                print(out[-4000:], file=sys.stderr)
                die(f"{m.name}: pytest exit {rc} (no tests collected or a usage error)")
            print(f"{m.name}: {verdict} ({secs:.0f} s)", file=sys.stderr)
            rows.append((m, m.tests, verdict, secs))
        print(table(rows))
        return 1 if any(r[2] == "**survived**" for r in rows) else 0
    finally:
        if a.keep:
            print(f"kept {copy}", file=sys.stderr)
        else:
            shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

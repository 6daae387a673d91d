"""Hardened local servers (``asapnet demo``, ``asapnet study``): real servers on 127.0.0.1, real HTTP.

The demo runs in its own process (the CLI command with a tiny random model), so that its memory
can be measured from /proc; the study servers run in this process.
"""
import argparse
import base64
import http.client
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from asapnet.checkpoint import save_generator
from asapnet.config import asap_preset
from asapnet.apps.httpguard import exposure_warning, is_loopback
from asapnet.models import create_model
from asapnet.apps.study import Study, StudyConfig, cmd_study, csv_cell, serve, trials_csv_path

MB = 2 ** 20


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def _request(base, method, path, body=None, headers=None, timeout=60):
    """(status, headers, parsed JSON body) of one request; every answer must be JSON."""
    host, port = base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        assert resp.getheader("Content-Type") == "application/json", (resp.status, data[:200])
        return resp.status, dict(resp.getheaders()), json.loads(data)
    finally:
        conn.close()


def _post(base, path, obj=None, raw=None, ctype="application/json", headers=None, timeout=60):
    body = raw if raw is not None else json.dumps(obj).encode()
    return _request(base, "POST", path, body, {"Content-Type": ctype, **(headers or {})}, timeout)


def _raw(base, data: bytes, timeout=10) -> bytes:
    """Send raw bytes, return everything the server answers until it closes."""
    host, port = base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _png_1bit(w, h) -> bytes:
    """A real w x h 1-bit black PNG, written directly (small file, nothing big allocated here but
    the raw rows once)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = zlib.compress((b"\x00" * (1 + (w + 7) // 8)) * h, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _file(name, data):
    return {"name": name, "data": base64.b64encode(data).decode()}


def _status_kb(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak(pid) -> bool:
    """Reset the process's peak RSS (VmHWM) so the next reading is the peak from now on."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# the demo, in its own process
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """(url, pid) of ``asapnet demo`` serving a tiny random Cityscapes-shaped model (35 classes +
    instance edges), one translation at a time, 3 s socket timeout."""
    torch.manual_seed(0)
    cfg = asap_preset("tiny", in_channels=36, s1=4)
    tmp = tmp_path_factory.mktemp("servers")
    ckpt = tmp / "g.safetensors"
    save_generator(ckpt, create_model("asap", cfg=cfg), "asap", cfg.to_dict(),
                   {"num_classes": 35, "use_instance": True})
    shim = ("import argparse, sys; from asapnet.apps.demo import cmd_demo; from asapnet.cli.parsers import add_demo_parser; "
            "ap = argparse.ArgumentParser(); add_demo_parser(ap.add_subparsers(dest='c')); "
            "sys.exit(cmd_demo(ap.parse_args(sys.argv[1:])))")
    err = open(tmp / "stderr.txt", "w+")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-c", shim, "demo", "--checkpoint", str(ckpt), "--port", "0",
                          "--threads", "1", "--timeout", "3", "--max-concurrent", "1", "--max-connections", "32"],
                         stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        line = p.stdout.readline()
        assert "asapnet demo: serving" in line, line + (err.seek(0) or err.read())
        yield line.split(" on ")[1].split()[0].rstrip("/"), p.pid
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
        err.seek(0)
        log = err.read()
        err.close()
    assert "Traceback" not in log, log
    assert "warning" not in log, log  # 127.0.0.1: no exposure warning


def test_cross_origin_and_non_json_posts_are_refused(demo):
    url, _ = demo
    host = url.split("//")[1]
    body = {"nothing": 1}
    # any other web page: refused, whatever it sends
    code, _, r = _post(url, "/api/translate", body, headers={"Origin": "http://evil.example"})
    assert code == 403 and "cross-origin" in r["error"], r
    code, _, r = _post(url, "/api/translate", body, headers={"Origin": "null"})
    assert code == 403
    # a 'simple' request a page can send without a CORS preflight: text/plain, form encoding
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        code, _, r = _post(url, "/api/translate", raw=json.dumps(body).encode(), ctype=ctype)
        assert code == 403 and "application/json" in r["error"], (ctype, r)
    # DNS rebinding: a foreign name resolving to 127.0.0.1 (Origin and Host agree, but not local)
    code, _, r = _post(url, "/api/translate", body,
                       headers={"Origin": "http://evil.example:80", "Host": "evil.example:80"})
    assert code == 403 and "localhost only" in r["error"], r
    # the page's own requests pass the checks (and get the API's answer)
    code, _, r = _post(url, "/api/translate", body, headers={"Origin": f"http://{host}"})
    assert code == 400 and r["error"] == "give 'example' or 'label'", r
    code, _, r = _post(url, "/api/translate", body, ctype="application/json; charset=utf-8")
    assert code == 400 and r["error"] == "give 'example' or 'label'", r


def test_bad_json_and_protocol_errors_are_json(demo):
    url, _ = demo
    code, _, r = _post(url, "/api/translate", raw=b"[" * 100_000 + b"]" * 100_000)
    assert code == 400 and "nested too deeply" in r["error"], r
    code, _, r = _post(url, "/api/translate", raw=b'{"example": NaN}')
    assert code == 400 and "NaN" in r["error"], r
    code, _, r = _post(url, "/api/translate", raw=b"\xff\xfe{}")
    assert code == 400
    code, _, r = _post(url, "/api/translate", raw=b"[1, 2]")
    assert code == 400 and "JSON object" in r["error"]
    # http.server's own errors are JSON too, never an HTML page
    for raw, status in ((b"GARBAGE\r\n\r\n", b" 400 "), (b"DELETE / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b" 501 ")):
        head, _, data = _raw(url, raw).partition(b"\r\n\r\n")
        assert status in head.split(b"\r\n")[0] and b"application/json" in head and "error" in json.loads(data), head
    code, _, r = _request(url, "GET", "/nothing")
    assert code == 404 and "no such page" in r["error"]


def test_oversized_and_unsized_bodies(demo):
    url, _ = demo
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest("POST", "/api/translate")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(10 ** 9))
    conn.endheaders()  # nothing of the body is sent: the answer comes from Content-Length alone
    resp = conn.getresponse()
    assert resp.status == 413 and "exceeds" in json.loads(resp.read())["error"]
    conn.close()
    head, _, data = _raw(url, b"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Content-Type: application/json\r\n\r\n").partition(b"\r\n\r\n")
    assert b" 411 " in head.split(b"\r\n")[0] and "Content-Length" in json.loads(data)["error"]


def test_huge_images_are_refused_from_the_header(demo):
    url, pid = demo
    huge = _png_1bit(9000, 9000)
    assert len(huge) < 100_000  # a small file that would decode to 81 megapixels
    small = _png(np.full((64, 64), 7, np.uint8))
    reset = _reset_peak(pid)
    before = _status_kb(pid, "VmHWM" if reset else "VmRSS")
    t = time.monotonic()
    code, _, r = _post(url, "/api/translate", {"label": _file("l.png", small), "instance": _file("big_inst.png", huge)})
    assert code == 413 and "big_inst.png: 9000x9000 is larger than this demo accepts" in r["error"], r
    code, _, r = _post(url, "/api/translate", {"label": _file("big.png", huge), "instance": _file("i.png", small)})
    assert code == 413 and "big.png: 9000x9000" in r["error"], r
    elapsed = time.monotonic() - t
    grown_mb = (_status_kb(pid, "VmHWM") - before) / 1024
    print(f"9000x9000 label/instance maps: refused in {elapsed:.2f} s, peak RSS grew {grown_mb:.0f} MB")
    assert grown_mb < 200, grown_mb


def test_concurrent_large_requests_are_bounded(demo):
    url, pid = demo
    ids = np.full((2048, 2048), 7, np.uint8)
    ids[:700] = 23
    inst = np.zeros((2048, 2048), np.uint16)
    inst[1000:1400, 300:900] = 26001
    body = json.dumps({"label": _file("big.png", _png(ids)), "instance": _file("big_inst.png", _png(inst))}).encode()
    _reset_peak(pid)
    results, info_ms = [], []
    start = threading.Barrier(21)

    def client():
        start.wait()
        try:
            results.append(_post(url, "/api/translate", raw=body, timeout=120))
        except Exception as e:  # noqa: BLE001 - recorded and asserted below
            results.append(e)

    threads = [threading.Thread(target=client) for _ in range(20)]
    for th in threads:
        th.start()
    start.wait()
    time.sleep(0.2)
    for _ in range(3):  # the server keeps answering while the requests run
        t = time.monotonic()
        code, _, r = _request(url, "GET", "/api/info", timeout=30)
        info_ms.append((time.monotonic() - t) * 1000)
        assert code == 200 and r["use_instance"] is True
    for th in threads:
        th.join(120)
    peak_mb = _status_kb(pid, "VmHWM") / 1024
    codes = sorted(x[0] if isinstance(x, tuple) else repr(x) for x in results)
    print(f"20 concurrent 2048x2048 requests: {codes.count(200)} x 200, {codes.count(503)} x 503; "
          f"server peak RSS {peak_mb:.0f} MB; /api/info meanwhile in {max(info_ms):.0f} ms at most")
    assert len(results) == 20 and set(codes) <= {200, 503}, codes
    assert 200 in codes, codes
    for code, headers, r in results:
        if code == 503:
            assert r == {"error": "busy, retry"} and int(headers["Retry-After"]) > 0
        else:
            assert (r["width"], r["height"]) == (2048, 2048)
    assert peak_mb < 4096, peak_mb
    # and afterwards it translates again
    code, _, r = _post(url, "/api/translate", {"label": _file("s.png", _png(np.full((32, 64), 7, np.uint8))),
                                               "instance": _file("i.png", _png(np.zeros((32, 64), np.uint8)))})
    assert code == 200 and (r["width"], r["height"]) == (64, 32), r


def test_stalled_clients_are_dropped(demo):
    url, _ = demo
    host, port = url.split("//")[1].split(":")
    # connected, sends nothing: closed after the 3 s timeout (a server that never closes it makes
    # recv raise socket.timeout after 30 s; no wall-time bound is asserted)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        t = time.monotonic()
        assert s.recv(1024) == b""
        waited = time.monotonic() - t
    print(f"idle connection closed after {waited:.1f} s (timeout 3 s)")
    assert waited > 2  # kept open for its timeout, not dropped at once (a lower bound: load cannot break it)
    # sends half a body, then stalls: a JSON 408, then closed
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /api/translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"exa")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 408 " in head.split(b"\r\n")[0] and "not received" in json.loads(body)["error"], data


def test_exposure_warning_and_loopback():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "a.localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "", "::", "192.168.1.5", "example.com", "localhost.evil.com"))
    assert exposure_warning("asapnet demo", "127.0.0.1", 8000) is None
    w = exposure_warning("asapnet demo", "0.0.0.0", 8000)
    assert w.startswith("asapnet demo: warning: listening on 0.0.0.0:8000") and "\n" not in w


# ---------------------------------------------------------------------------------------------
# the study
# ---------------------------------------------------------------------------------------------


def _study(tmp_path, n=3, names=("ASAP", "SPADE"), stems=None):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for i in range(n):
        stem = stems[i] if stems else f"img{i}"
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(a / f"{stem}.png")
        Image.fromarray(np.full((8, 8, 3), 30, np.uint8)).save(b / f"{stem}.png")
    return Study.create(StudyConfig(a, b, tmp_path / "out" / "s.csv", names[0], names[1], seed=0))


def _answer(url, trial, side="left", ms=100, **kw):
    return _post(url, "/api/answer", {"trial": trial, "side": side, "ms": ms}, **kw)


def test_study_rejects_bad_answers_and_keeps_saving(tmp_path):
    study = _study(tmp_path, 3, names=('=HYPERLINK("http://x","a")', "-SPADE"), stems=["=cmd", "+x", "plain"])
    server = serve(study, timeout=5)
    url = "http://%s:%d" % server.server_address[:2]
    try:
        first = study.next_trial().index
        bad = [{"trial": first, "side": "left", "ms": '=HYPERLINK("http://evil","x")'},
               {"trial": first, "side": "left", "ms": 1e300}, {"trial": first, "side": "left", "ms": -5},
               {"trial": first, "side": "left", "ms": True}, {"trial": True, "side": "left", "ms": 1},
               {"trial": "0", "side": "left"}, {"trial": 1.5, "side": "left"}, {"trial": 99, "side": "left"},
               {"trial": first, "side": "=1+1"}, {"trial": first, "side": ["left"]}, {"trial": first}, [first, "left"]]
        for obj in bad:
            code, _, r = _post(url, "/api/answer", obj)
            assert code == 400 and r["error"], (obj, r)
        for const in (b"Infinity", b"-Infinity", b"NaN"):
            raw = b'{"trial": %d, "side": "left", "ms": %s}' % (first, const)
            code, _, r = _post(url, "/api/answer", raw=raw)
            assert code == 400 and "not a valid JSON number" in r["error"], r
        # a forged answer from another web page, a form post, an oversized body: refused
        code, _, _ = _answer(url, first, headers={"Origin": "http://evil.example"})
        assert code == 403
        code, _, _ = _post(url, "/api/answer", raw=json.dumps({"trial": first, "side": "left"}).encode(),
                           ctype="text/plain")
        assert code == 403
        code, _, _ = _post(url, "/api/answer", raw=b" " * 10_000)
        assert code == 413
        assert study.answered == 0 and not (tmp_path / "out" / "s.csv").exists()  # nothing changed
        # later answers are saved as before
        for k in range(3):
            code, _, state = _answer(url, study.next_trial().index, "left" if k % 2 else "right", ms=250.4 + k)
            assert code == 200, state
        assert state["done"] is True and study.done_event.is_set()
    finally:
        server.shutdown()
        server.server_close()
    tally = (tmp_path / "out" / "s.csv").read_text()
    rows = trials_csv_path(tmp_path / "out" / "s.csv").read_text()
    assert tally.splitlines()[1].startswith("\"'=HYPERLINK(\"\"http://x\"\",\"\"a\"\")\",'-SPADE,3,"), tally
    assert "'=cmd" in rows and "'+x" in rows and ",plain," in rows and ",'-SPADE," in rows, rows
    assert sorted(int(line.rsplit(",", 1)[1]) for line in rows.splitlines()[1:]) == [250, 251, 252]
    assert csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("\tx") == "'\tx" and csv_cell(-3) == -3


def test_study_answer_not_recorded_when_saving_fails(tmp_path):
    study = _study(tmp_path, 2)
    server = serve(study, timeout=5)
    url = "http://%s:%d" % server.server_address[:2]
    out = tmp_path / "out" / "s.csv"
    try:
        out.mkdir(parents=True)  # the tally path became a folder: the write fails
        t = study.next_trial().index
        code, _, r = _answer(url, t)
        assert code == 500 and "could not save the answer" in r["error"], r
        assert study.answered == 0
        out.rmdir()
        code, _, r = _answer(url, t)  # the same trial again, now saved
        assert code == 200 and study.answered == 1 and out.is_file()
    finally:
        server.shutdown()
        server.server_close()


def test_study_connection_cap_and_timeout(tmp_path):
    study = _study(tmp_path, 1)
    server = serve(study, timeout=1, max_connections=3)
    url = "http://%s:%d" % server.server_address[:2]
    try:
        stalled = [socket.create_connection(server.server_address[:2], timeout=10) for _ in range(3)]
        time.sleep(0.3)
        code, headers, r = _request(url, "GET", "/api/state", timeout=10)
        assert code == 503 and r == {"error": "busy, retry"} and headers["Retry-After"] == "2"
        assert all(s.recv(10) == b"" for s in stalled)  # dropped after the 1 s timeout (else recv times out)
        for s in stalled:
            s.close()
        time.sleep(0.2)
        code, _, r = _request(url, "GET", "/api/state", timeout=10)
        assert code == 200 and r["total"] == 1
    finally:
        server.shutdown()
        server.server_close()


def _study_args(tmp_path, out):
    study = _study(tmp_path, 1)
    return argparse.Namespace(folder_a=str(study.cfg.folder_a), folder_b=str(study.cfg.folder_b), names=None,
                              out=str(out), host="127.0.0.1", port=0, seed=0, max_trials=None,
                              keep_serving=False, timeout=1.0)


@pytest.mark.parametrize("make_bad", ["parent_is_a_file", "out_is_a_folder"])
def test_study_unwritable_out_is_refused_at_start(tmp_path, capsys, monkeypatch, make_bad):
    if make_bad == "parent_is_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "s.csv"
    else:
        out = tmp_path / "s.csv"
        out.mkdir()

    def no_server(*args, **kwargs):
        raise AssertionError("the study server was started although --out cannot be written")

    monkeypatch.setattr("asapnet.apps.study.serve", no_server)  # refused at start: before any server
    rc = cmd_study(_study_args(tmp_path, out))
    captured = capsys.readouterr()
    assert rc == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asapnet study: error: --out ") and str(out) in lines[0], captured
    assert "saved" not in captured.out

"""The 2AFC study: confidence interval, trial logic, CSVs, and a click-through in headless Chromium."""
import csv
import json
import math
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from asapnet.data.io import DataError
from asapnet.apps.study import Study, StudyConfig, match_folders, serve, trials_csv_path
from asapnet.apps.study_stats import binomial_ci, binomial_p_value

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"]


def _folders(tmp_path, n=6):
    a, b = tmp_path / "asap", tmp_path / "spade"
    a.mkdir(), b.mkdir()
    for i in range(n):
        Image.fromarray(np.full((16, 32, 3), (200, 30, 30), np.uint8)).save(a / f"img{i}.png")
        Image.fromarray(np.full((16, 32, 3), (30, 30, 200), np.uint8)).save(b / f"img{i}.jpg")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(a / "only_in_a.png")
    return a, b


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_clopper_pearson_interval_known_values():
    lo, hi = binomial_ci(5, 10)
    assert lo == pytest.approx(0.18709, abs=1e-4) and hi == pytest.approx(0.81291, abs=1e-4)
    lo, hi = binomial_ci(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.30850, abs=1e-4)
    assert all(math.isnan(v) for v in binomial_ci(0, 0))
    assert binomial_p_value(10, 10) == pytest.approx(2 / 1024)
    with pytest.raises(ValueError):
        binomial_ci(11, 10)
    # values of scipy.stats.binomtest (the implementation before the exact computation here)
    lo, hi = binomial_ci(3, 20, confidence=0.9)
    assert lo == pytest.approx(0.042169407885778595, rel=1e-9) and hi == pytest.approx(0.34366380431470434, rel=1e-9)
    lo, hi = binomial_ci(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.30850, abs=1e-4)
    assert binomial_p_value(2, 10) == 0.109375 and binomial_p_value(7, 10) == 0.34375
    assert binomial_p_value(5, 10) == 1.0 and binomial_p_value(0, 1) == 1.0


def test_match_folders_by_stem(tmp_path):
    a, b = _folders(tmp_path, 3)
    assert [n for n, _, _ in match_folders(a, b)] == ["img0", "img1", "img2"]
    empty = tmp_path / "other"
    empty.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(empty / "zzz.png")
    with pytest.raises(DataError, match="share no image"):
        match_folders(a, empty)


def test_study_answers_and_csv_without_browser(tmp_path):
    a, b = _folders(tmp_path, 4)
    study = Study.create(StudyConfig(a, b, tmp_path / "s.csv", "ASAP", "SPADE", seed=3))
    assert sorted(t.name for t in study.trials) == ["img0", "img1", "img2", "img3"]
    t0 = study.next_trial()
    study.answer(t0.index, "left" if t0.a_left else "right", 120.0)  # picks ASAP
    with pytest.raises(ValueError, match="already answered"):
        study.answer(t0.index, "left")
    with pytest.raises(ValueError, match="side"):
        study.answer(study.next_trial().index, "up")
    tally = _read(tmp_path / "s.csv")[0]
    assert tally["trials"] == "1" and tally["a_preferred"] == "1" and tally["method_a"] == "ASAP"
    rows = _read(trials_csv_path(tmp_path / "s.csv"))
    assert rows == [{"trial": str(t0.index), "name": t0.name, "left": "ASAP" if t0.a_left else "SPADE",
                     "right": "SPADE" if t0.a_left else "ASAP", "chosen": "ASAP", "ms": "120"}]


def test_study_answer_validates_before_changing_state(tmp_path):
    a, b = _folders(tmp_path, 2)
    study = Study.create(StudyConfig(a, b, tmp_path / "s.csv", "ASAP", "SPADE", seed=0))
    t = study.next_trial().index
    for ms in (float("inf"), float("nan"), -1.0, 1e12, "=1+1", True):
        with pytest.raises(ValueError, match="ms must be"):
            study.answer(t, "left", ms)
    with pytest.raises(ValueError, match="trial must be an integer"):
        study.answer(str(t), "left", 5.0)
    assert study.answered == 0 and not (tmp_path / "s.csv").exists()
    study.answer(t, "left", 5.4)
    assert _read(trials_csv_path(tmp_path / "s.csv"))[0]["ms"] == "5"


def test_study_parser_options():
    import argparse

    from asapnet.cli.parsers import add_study_parser

    ap = argparse.ArgumentParser()
    add_study_parser(ap.add_subparsers(dest="command"))
    a = ap.parse_args(["study", "out/asap", "out/spade", "--names", "ASAP,SPADE", "--out", "s.csv", "--seed", "2"])
    assert (a.folder_a, a.folder_b, a.names, a.out, a.seed, a.port) == ("out/asap", "out/spade", "ASAP,SPADE",
                                                                         "s.csv", 2, 8000)


def test_server_api_hides_methods_and_rejects_bad_answers(tmp_path):
    a, b = _folders(tmp_path, 2)
    study = Study.create(StudyConfig(a, b, tmp_path / "s.csv", seed=0))
    server = serve(study)
    url = "http://%s:%d" % server.server_address[:2]
    try:
        state = json.load(urllib.request.urlopen(url + "/api/state"))
        assert state["left"] == f"/img/{state['trial']}/left" and state["total"] == 2
        img = urllib.request.urlopen(url + state["left"]).read()
        t = study.trials[state["trial"]]
        assert img == (t.a_path if t.a_left else t.b_path).read_bytes()
        req = urllib.request.Request(url + "/api/answer", data=b'{"trial": 99, "side": "left"}', method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        assert e.value.code == 400 and json.load(e.value)["error"] == "no trial 99"
        # a form post (what any web page can send without asking) is refused, and changes nothing
        req = urllib.request.Request(url + "/api/answer", data=b'{"trial": 0, "side": "left"}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req)
        assert e.value.code == 403 and "application/json" in json.load(e.value)["error"] and study.answered == 0
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "/img/0/../../etc/passwd")
    finally:
        server.shutdown()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian: apt-get install chromium chromium-driver)")
def test_click_through_in_headless_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    a, b = _folders(tmp_path, 6)
    out = tmp_path / "study.csv"
    study = Study.create(StudyConfig(a, b, out, "ASAP", "SPADE", seed=1))
    assert {t.a_left for t in study.trials} == {True, False}  # both orders occur with this seed
    server = serve(study)
    url = "http://%s:%d/" % server.server_address[:2]
    shown = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page()
            page.goto(url)
            for i in range(6):
                page.wait_for_selector("body[data-state=ready]")
                assert page.inner_text("#progress") == f"pair {i + 1} of 6"
                shown.append(int(page.get_attribute("body", "data-trial")))
                # both images really loaded
                assert page.evaluate("document.getElementById('img-left').naturalWidth") == 32
                if i % 2 == 0:
                    page.click("#choose-left")
                else:
                    page.keyboard.press("ArrowRight")
            page.wait_for_selector("body[data-state=done]")
            assert "Thank you" in page.inner_text("#done")
            assert "ASAP preferred" in page.inner_text("#tally")
            browser.close()
    finally:
        server.shutdown()
    assert sorted(shown) == list(range(6)) and study.done_event.is_set()
    # expected choices: even positions clicked left, odd ones answered right
    expected_a = sum((t.a_left if k % 2 == 0 else not t.a_left) for k, t in enumerate(study.trials[i] for i in shown))
    tally = _read(out)[0]
    assert int(tally["trials"]) == 6 and int(tally["a_preferred"]) == expected_a
    assert int(tally["b_preferred"]) == 6 - expected_a
    lo, hi = binomial_ci(expected_a, 6)
    assert float(tally["ci95_low"]) == pytest.approx(lo) and float(tally["ci95_high"]) == pytest.approx(hi)
    rows = _read(trials_csv_path(out))
    assert len(rows) == 6 and all(r["chosen"] in ("ASAP", "SPADE") and int(r["ms"]) >= 0 for r in rows)
    assert [r["chosen"] for r in rows] == ["ASAP" if study.trials[int(r["trial"])].chosen == "a" else "SPADE"
                                           for r in rows]

"""The typed protocol between the session and the frame worker, and the app's wiring without import circles.

No thread is started and nothing is drawn: the worker's command handlers run directly.
"""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from app import worker_protocol as wp
from app.frame_worker import FrameWorker, RegionMeans, _doing
from app.subjects import NeutralSource, SubjectCatalog, SubjectSpec, mesh_subject_name

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def worker():
    return FrameWorker(lambda source, engine: None)


def test_commands_are_frozen_dataclasses_and_only_commands_are_posted(worker):
    seek = wp.Seek(index=7, request=3)
    with pytest.raises(AttributeError):
        seek.index = 8  # type: ignore[misc]
    worker.post(seek)
    worker.post(wp.SetTargets((SubjectSpec("id001", None, None, "the model checkpoint", NeutralSource.MODEL),)))
    assert worker._commands.get_nowait() == seek
    assert [s.name for s in worker._commands.get_nowait().specs] == ["id001"]
    for wrong in ("seek", ("seek", (7, 3)), {"index": 7}):
        with pytest.raises(TypeError, match="not a worker command"):
            worker.post(wrong)  # type: ignore[arg-type]
    assert worker._commands.empty()


def test_the_worker_applies_commands_to_its_state(worker):
    for command in (wp.SetSpeed(2.5), wp.SetLoop(False), wp.SetPaced(False), wp.SetRois(((1, 2, 3, 4), None, None)),
                    wp.Seek(5, 1), wp.Play(True), wp.Wake(), wp.Refresh()):
        worker._apply(command)  # no source and no model: the ones that need them do nothing
    assert worker._speed == 2.5 and not worker._loop and not worker._paced
    assert worker._rois == [(1, 2, 3, 4), None, None]
    assert worker._pending is None and not worker._playing
    worker._apply(wp.Quit())
    assert worker._quit


def test_a_failing_command_is_a_sentence_naming_it(worker):
    failures: list[str] = []
    worker.model_failed.connect(failures.append)
    worker._apply(wp.LoadModel("/nowhere/model.pt"))
    assert failures and "/nowhere/model.pt" in failures[0] and "Traceback" not in failures[0]
    problems: list[str] = []
    worker.problem.connect(problems.append)
    worker._handlers[wp.SetSpeed] = lambda c: 1 / 0
    worker._apply(wp.SetSpeed(1.0))
    assert problems and problems[0].startswith("set speed")
    assert _doing(wp.SetTargets(())) == "set targets" and _doing(wp.LoadModel("m")) == "load model"


def test_reports_become_the_sessions_plain_state():
    opened = wp.SourceOpened(kind="capture", name="id001_c00", live=False, fps=30.0, subject_id="id001",
                             headset_id="hmc-7", spec={"kind": "capture", "path": "/data/c"}, frame_count=24,
                             has_ground_truth=True)
    info = opened.as_dict()
    assert info == {"kind": "capture", "name": "id001_c00", "live": False, "fps": 30.0, "subject_id": "id001",
                    "headset_id": "hmc-7", "spec": {"kind": "capture", "path": "/data/c"}, "frame_count": 24,
                    "has_ground_truth": True}
    neutral = np.zeros((5, 3), np.float32)
    subject = wp.SubjectSet(name="id001", origin="the model checkpoint", textured=True, note="", mode="shape",
                            template=False, neutral=neutral, override=False)
    state = subject.as_dict()
    assert state["neutral"] is neutral and state["name"] == "id001" and state["textured"]
    assert wp.TargetsSet(("id000",), ()).driven == ("id000",)


def test_region_means_equal_boolean_mask_means():
    rng = np.random.default_rng(0)
    masks = {"eyes": rng.random(50) < 0.3, "mouth": rng.random(50) < 0.2, "face": np.ones(50, bool)}
    per_vertex = rng.uniform(0, 5, 50).astype(np.float32)
    means = RegionMeans(masks)(per_vertex)
    assert list(means) == ["eyes", "mouth", "face"]
    for region, mask in masks.items():
        assert means[region] == pytest.approx(float(per_vertex[mask].astype(np.float64).mean()), rel=1e-12)


def test_where_a_neutral_comes_from_is_a_value_not_words(tmp_path):
    root = tmp_path / "subjects"
    (root / "alice").mkdir(parents=True)
    (root / "alice" / "neutral.obj").write_text("v 0 0 0\n")
    catalog = SubjectCatalog([root])
    catalog.set_model(["carol"], [])
    assert catalog.resolve("carol").source is NeutralSource.MODEL
    assert catalog.resolve("alice").source is NeutralSource.FOLDER
    catalog.add_loaded("carol", "/scans/carol.obj")
    assert catalog.resolve("carol").source is NeutralSource.LOADED


def test_synthetic_source_drives_its_own_neutral_for_a_model_subject():
    """The session's resolver (what the worker calls) decides on NeutralSource, not on the origin text."""
    from app.session import Session
    from engine.runtime.sources import SyntheticSource
    source = SyntheticSource.__new__(SyntheticSource)  # no renderer: only what the resolver reads
    source.subject_id = "carol"
    source.stream = types.SimpleNamespace(neutral=np.ones((4, 3)))
    catalog = SubjectCatalog([])
    catalog.set_model(["carol"], [])
    session = types.SimpleNamespace(catalog=catalog, _user_subject=None)
    spec = Session._resolve_subject(session, source, types.SimpleNamespace(subjects=[]))
    assert spec.source is NeutralSource.SYNTHETIC and spec.origin == "the synthetic world"
    np.testing.assert_array_equal(spec.neutral, np.ones((4, 3)))
    catalog.add_loaded("carol", "/scans/carol.obj")  # a mesh the user loaded wins over the synthetic one
    assert Session._resolve_subject(session, source, types.SimpleNamespace(subjects=[])).source is NeutralSource.LOADED


def test_mesh_subject_name(tmp_path):
    folder = tmp_path / "id007"
    folder.mkdir()
    assert mesh_subject_name(folder / "neutral.ply") == "id007"
    assert mesh_subject_name(folder / "scan_01.obj") == "scan_01"
    (folder / "subject.json").write_text(json.dumps({"subject_id": "id042"}))
    assert mesh_subject_name(folder / "anything.obj") == "id042"
    (folder / "subject.json").write_text("{broken")
    assert mesh_subject_name(folder / "neutral.obj") == "id007"


def test_no_import_circles():
    """engine.evaluation.plots does not import engine.evaluation.evaluate, and app.actions does not import app.main_window."""
    code = ("import sys; import engine.evaluation.plots; assert 'engine.evaluation.evaluate' not in sys.modules, 'plots->evaluate'; "
            "import app.actions; assert 'app.main_window' not in sys.modules, 'actions->main_window'")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-1500:]


def test_resolving_again_applies_the_subject_only_when_the_answer_changed(worker):
    """After a model loads the session asks the worker to resolve the subject again (the catalog may now
    know its adaptation layer); an unchanged answer must not re-apply (and re-announce) it."""
    answers = [SubjectSpec("id000", "/d/id000/neutral.obj", None, "/d", NeutralSource.FOLDER)]
    worker.resolver = lambda source, engine: answers[-1]
    applied: list = []
    worker._apply_subject = lambda: (applied.append(answers[-1].avatar),
                                     setattr(worker, "_applied_key", wp_key(answers[-1])))
    worker.engine = object()
    worker._apply_subject()
    worker._apply(wp.ResolveSubject())
    assert applied == [None]
    answers.append(SubjectSpec("id000", "/d/id000/neutral.obj", "/d/id000/avatar", "/d", NeutralSource.FOLDER))
    worker._apply(wp.ResolveSubject())
    assert applied == [None, "/d/id000/avatar"]


def wp_key(spec):
    from app.frame_worker import _spec_key
    return _spec_key(spec)

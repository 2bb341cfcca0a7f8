"""Anonymous users of one server: private per-session outputs, cleaned on session end and by age;
on a public deployment only bundled and allow-listed models, a bounded model cache, model cards
of loaded models only, and no server paths in messages."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from transmrsr.serving import (
    BUNDLED,
    FactorNotServed,
    ModelNotAllowed,
    ModelPolicy,
    ModelRegistry,
    ResolvedModel,
    SessionRegistry,
    public_message,
    resolve_model,
)

from apphelpers import REPO, run_file, running_app, viewer_panel


def _wait(cond, timeout: float = 30.0, step: float = 0.5) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    with running_app(work, tiny_dir, GRADIO_TEMP_DIR=str(work / "gradio-cache")) as app:
        yield app


def _same_name_uploads(t1_crop: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two different volumes both called t1.nii.gz."""
    img = nib.load(str(t1_crop))
    a, b = tmp_path / "a" / "t1.nii.gz", tmp_path / "b" / "t1.nii.gz"
    a.parent.mkdir()
    b.parent.mkdir()
    shutil.copy(t1_crop, a)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32)[::-1].copy(), img.affine), b)
    return a, b


def test_two_users_with_the_same_file_name_never_share_a_result(server, t1_crop, tmp_path, one_torch_thread):
    from gradio_client import Client, handle_file

    a, b = _same_name_uploads(t1_crop, tmp_path)
    sessions = server.work / "sessions"
    before = set(os.listdir(sessions)) if sessions.is_dir() else set()
    sr_a, info_a = Client(server.url, verbose=False).predict(handle_file(str(a)), 4, 0.9, api_name="/super_resolve")
    new_a = set(os.listdir(sessions)) - before
    assert len(new_a) == 1
    folder_a = sessions / new_a.pop()
    server_a = folder_a / "t1_sr_x4.nii.gz"
    bytes_a = server_a.read_bytes()
    sr_b, info_b = Client(server.url, verbose=False).predict(handle_file(str(b)), 4, 0.9, api_name="/super_resolve")
    new = set(os.listdir(sessions)) - before
    assert len(new) == 2, new  # one private folder per session
    for name in new:
        assert len(name) >= 20 and "t1" not in name  # unguessable, not derived from the upload
    assert server_a.read_bytes() == bytes_a  # B's run did not replace A's result
    assert info_a["input_sha256"] != info_b["input_sha256"]
    got_a = np.asarray(nib.load(sr_a).dataobj)
    got_b = np.asarray(nib.load(sr_b).dataobj)
    assert not np.allclose(got_a, got_b)
    np.testing.assert_array_equal(got_a, np.asarray(nib.load(str(server_a)).dataobj))


def test_closing_the_tab_deletes_the_session_folder(server, browser, t1_crop, tmp_path):
    """Closing the tab deletes the session's folder and its upload in Gradio's cache (by then,
    not only by age)."""

    own = tmp_path / "closing_tab_upload.nii.gz"  # a name (and bytes) no other session uploads
    img = nib.load(str(t1_crop))
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj, np.float32) + 1.0, img.affine), own)
    t1_crop = own
    sessions = server.work / "sessions"
    before = set(os.listdir(sessions))
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server.url)
    run_file(page, t1_crop)
    mine = set(os.listdir(sessions)) - before
    assert len(mine) == 1 and any((sessions / n).iterdir() for n in mine)
    uploads = list((server.work / "gradio-cache").rglob(own.name))
    assert uploads, "the upload is not in Gradio's cache"
    page.close()
    assert _wait(lambda: not (sessions / next(iter(mine))).exists()), "the session folder outlived its tab"
    assert _wait(lambda: not any(p.exists() for p in uploads)), "the upload outlived its tab"


def test_uploads_and_leftovers_are_deleted_by_age(tiny_dir, t1_crop, tmp_path, one_torch_thread):
    """A short TTL: Gradio's upload cache and an API session's folder go by age; a folder left by an
    earlier process is removed when the app starts."""
    from gradio_client import Client, handle_file

    work, cache = tmp_path / "work", tmp_path / "gradio-cache"
    stale = work / "sessions" / "left-by-an-earlier-process"
    stale.mkdir(parents=True)
    (stale / "old_sr_x4.nii.gz").write_bytes(b"x")
    old = time.time() - 86400
    os.utime(stale, (old, old))
    env = dict(
        TRANSMRSR_SESSION_TTL="3", GRADIO_TEMP_DIR=str(cache), TRANSMRSR_ANNOTATIONS=str(tmp_path / "annotations")
    )
    with running_app(work, tiny_dir, **env) as app:
        assert _wait(lambda: not stale.exists(), timeout=10), "a leftover of an earlier process survived the restart"
        Client(app.url, verbose=False).predict(handle_file(str(t1_crop)), 4, 0.9, api_name="/super_resolve")
        uploads = [p for p in cache.rglob("t1_crop.nii.gz")]
        assert uploads and list((work / "sessions").iterdir())
        assert _wait(lambda: not any(p.exists() for p in uploads), timeout=40), "the upload cache was not cleaned"
        assert _wait(lambda: not list((work / "sessions").iterdir()), timeout=40), "the API session's folder stayed"


def test_public_server_loads_no_server_path(tiny_dir, browser, t1_crop, tmp_path):
    from playwright.sync_api import expect

    other = Path(shutil.copytree(tiny_dir, tmp_path / "secret-weights"))
    (other / "README.md").write_text("# SECRET CARD\n")
    env = dict(TRANSMRSR_PUBLIC="1", TRANSMRSR_ALLOWED_MODELS="someone/allowed-model")
    with running_app(tmp_path / "work", tiny_dir, TRANSMRSR_ANNOTATIONS=str(tmp_path / "ann"), **env) as app:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(app.url)
        box = page.locator("#model-spec textarea, #model-spec input").first
        expect(box).to_have_value("default", timeout=60_000)  # the operator's default folder is not shown
        assert str(tiny_dir) not in page.content()
        page.locator("#volume-upload input[type=file]").set_input_files(str(t1_crop))
        for spec in (str(other), "/etc"):
            box.fill(spec)
            page.locator("#run").click()
            toast = page.locator(".toast-body").filter(has_text="not served here")
            expect(toast.first).to_be_visible(timeout=30_000)
            text = toast.first.inner_text()
            assert "bundled" in text and "someone/allowed-model" in text and str(tmp_path) not in text, text
            assert "/etc" not in text and "SECRET" not in text
            page.locator(".toast-body").first.click()
            for close in page.locator(".toast-close").all():
                close.click()
        page.get_by_role("tab", name="About").click()
        assert "SECRET CARD" not in page.locator("#model-card").inner_text()
        page.close()
    assert "SECRET" not in app.log_path.read_text()


def test_session_end_frees_the_case_in_memory(tiny_dir, browser, t1_crop, tmp_path, monkeypatch, one_torch_thread):
    """The app in this process: after the tab closes, nothing keeps the session's volumes alive."""
    import gc
    import weakref

    from playwright.sync_api import expect

    import app as appmod

    from apphelpers import free_port

    monkeypatch.setattr(appmod.state, "MODELS", ModelRegistry(ModelPolicy(REPO / "checkpoints", default=str(tiny_dir))))
    monkeypatch.setattr(appmod.state, "SESSIONS", SessionRegistry(tmp_path / "sessions"))
    demo = appmod.build_app()
    port = free_port()
    demo.queue().launch(
        server_port=port, prevent_thread_lock=True, quiet=True, allowed_paths=[str(appmod.SESSIONS.root)]
    )
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#volume-upload input[type=file]").set_input_files(str(t1_crop))
        page.locator("#run").click()
        expect(page.locator(viewer_panel("sr"))).to_be_visible(timeout=120_000)
        (sid,) = appmod.SESSIONS.sessions()
        case = weakref.ref(next(iter(appmod.SESSIONS._sessions[sid]["cases"].values())))
        assert case() is not None and case().sr.nbytes > 0
        page.close()
        assert _wait(lambda: not appmod.SESSIONS.sessions(), timeout=30), "the session outlived its tab"
        gc.collect()
        assert case() is None, gc.get_referrers(case())
    finally:
        demo.close()


# ---------------------------------------------------------------------------------------- the library, no server
def test_policy_allow_list_and_factors():
    public = ModelRegistry(ModelPolicy(REPO / "checkpoints", public=True, allowed=("owner/model",)))
    assert public.check("", 8)[2] == "transmrsr-small-t1-x8"
    assert public.check("owner/model", 4)[1] == "owner/model"
    for bad in ("/etc", "checkpoints/transmrsr-small-t1-x4", "../x", "owner/other", "owner/model/../../etc"):
        with pytest.raises(ModelNotAllowed):
            public.check(bad, 4)
    with pytest.raises(FactorNotServed, match="×3 .*×4 and ×8"):
        public.check(BUNDLED, 3)
    local = ModelRegistry(ModelPolicy(REPO / "checkpoints"))
    assert local.check("/some/folder", 4)[2] == "folder"  # local use: any folder, named by its last part
    with pytest.raises(FactorNotServed):
        local.check("/some/folder", 100)


def test_one_resolve_model_for_the_cli_and_the_app(tmp_path, monkeypatch):
    """The CLI's --model and the app's Model box name the same weights for a spec and a factor."""
    import transmrsr.cli as cli

    bundled4 = resolve_model("", 4)
    assert bundled4 == resolve_model(None, 4) == resolve_model("bundled", 4)
    assert bundled4 == ResolvedModel(
        source=str(REPO / "checkpoints" / "transmrsr-small-t1-x4"),
        name="transmrsr-small-t1-x4",
        bundled=True,
        key="bundled@x4",
    )
    assert resolve_model("owner/name", 3) == ResolvedModel("owner/name", "owner/name", False, "owner/name")
    assert resolve_model(str(tmp_path / "run"), 4).name == "run"
    with pytest.raises(FactorNotServed, match="no bundled weights for x5 in this installation"):
        resolve_model(None, 5)
    assert str(REPO) not in str(pytest.raises(FactorNotServed, resolve_model, None, 5).value)
    # the app's registry (its policy on top) and the CLI's default folder are resolve_model's
    reg = ModelRegistry(ModelPolicy(REPO / "checkpoints"))
    for spec in (BUNDLED, "owner/name", str(tmp_path / "run")):
        r = resolve_model(spec, 4)
        assert reg.check(spec, 4) == (r.key, r.source, r.name, r.bundled)
    loaded = []
    monkeypatch.setattr("transmrsr.models.load_sr_model", lambda source, **kw: loaded.append(source))
    cli._load_model(None, 4)
    cli._load_model(None, 8)
    cli._load_model("owner/name", 4)
    assert loaded == [bundled4.source, resolve_model(None, 8).source, "owner/name"]


def test_model_cache_is_a_bounded_lru():
    import torch

    loads = []

    def loader(source):
        loads.append(source)
        return torch.nn.Linear(2, 2)

    reg = ModelRegistry(ModelPolicy(REPO / "checkpoints", cache_size=2), loader=loader)
    reg.get("/m/a", 4)
    reg.get("/m/b", 4)
    reg.get("/m/a", 4)  # a is now the most recent
    reg.get("/m/c", 4)  # b goes
    assert [m.key for m in reg.loaded()] == ["/m/a", "/m/c"]
    reg.get("/m/b", 4)
    assert loads == ["/m/a", "/m/b", "/m/c", "/m/b"]
    assert reg.loaded_entry("/m/a", 4) is None  # dropped in turn


def test_about_reads_only_cards_of_loaded_models(tiny_dir, tmp_path, monkeypatch):
    import app as appmod

    folder = Path(shutil.copytree(tiny_dir, tmp_path / "m"))
    (folder / "README.md").write_text("# THE CARD\n")
    reg = ModelRegistry(ModelPolicy(REPO / "checkpoints", cache_size=1))
    monkeypatch.setattr(appmod.state, "MODELS", reg)
    assert "THE CARD" not in appmod.model_card_markdown(str(folder), 4)  # typed, never loaded: not read
    reg.get(str(folder), 4)
    assert "THE CARD" in appmod.model_card_markdown(str(folder), 4)


def test_messages_and_sessions(tmp_path):
    assert public_message("/tmp/gradio/ab12/scan.nii.gz: not a readable NIfTI file") == (
        "scan.nii.gz: not a readable NIfTI file"
    )
    assert public_message("slice 10/40 of owner/name, C:\\data\\x.nii") == "slice 10/40 of owner/name, x.nii"
    reg = SessionRegistry(tmp_path / "s", ttl_s=60)
    fa, fb = reg.folder("a"), reg.folder("b")
    assert fa != fb and reg.folder("a") == fa
    ref = reg.set_case("a", "case A")
    assert reg.case(ref) == "case A" and reg.case("guess") is None
    reg.close("a")
    assert not fa.exists() and reg.case(ref) is None and fb.exists()
    assert reg.sweep(now=time.time() + 120) == 1 and not fb.exists()


def test_session_uploads_are_deleted_with_the_session_unless_shared(tmp_path):
    reg = SessionRegistry(tmp_path / "sessions", ttl_s=3600)
    cache = tmp_path / "cache"
    (cache / "h1").mkdir(parents=True)
    mine, shared, outside = cache / "h1" / "a.nii.gz", cache / "shared.nii.gz", tmp_path / "example.nii.gz"
    for p in (mine, shared, outside):
        p.write_bytes(b"x")
    assert reg.note_upload("A", mine, cache) and reg.note_upload("A", shared, cache)
    assert reg.note_upload("B", shared, cache)
    assert not reg.note_upload("A", outside, cache)  # not in the upload cache: never recorded
    reg.close("A")
    assert not mine.exists() and not (cache / "h1").exists()
    assert shared.exists() and outside.exists()  # B still holds the shared upload
    reg.close("B")
    assert not shared.exists() and outside.exists()

"""The Annotate tab: a blinded reader study on the case run in the Super-resolve tab (ratings, flags, painted
regions, the uncertainty map after rating; the operator's pooled summary and exports)."""

from __future__ import annotations

import hmac
import random
import shutil
from datetime import datetime
from pathlib import Path

import gradio as gr
import numpy as np

from appui import state
from appui.state import case_of, model_of, session_id, user_error
from transmrsr.annotations import MAX_LENGTHS, AnnotationStore, Reading
from transmrsr.serving import public_message
from transmrsr.studio import (
    Case,
    network_plane,
    painted_region,
    plane_axis,
    reader_image,
    reader_items,
    region_uncertainty,
    uncertainty_picture,
)
from transmrsr.viewer import PLANES

ANN_COMPARE = ["cubic interpolation", "TransMRSR at another φ"]
ANN_RATINGS = [("1 · unusable", 1), ("2", 2), ("3", 3), ("4", 4), ("5 · excellent", 5)]
ANN_SUMMARY_HEADERS = ["method", "n", "mean rating", "hallucination rate", "artifact rate"]
ANN_NO_CASE = "Run a volume in the Super-resolve tab first: there is nothing to annotate yet."
ANN_FINISHED = "You have finished this reading session; reload the page to start another."
#: The reader's uncertainty overlay: unavailable until every image of the slice is rated (seeing where the
#: model is unsure would bias the rating), then offered on Image A and Image B.
ANN_UNCERTAINTY_LABEL = "Show the uncertainty map on the images (after you have rated every image of this slice)"
ANN_UNCERTAINTY_HEADERS = [
    "case",
    "case id",
    "method",
    "hallucination flags",
    "painted voxels",
    "uncertainty inside",
    "uncertainty outside",
    "inside / outside",
]


def annotation_store(create: bool = True) -> AnnotationStore | None:
    """The reader-study store under state.ANNOTATIONS_DIR (None when ``create`` is False and there is none yet)."""
    db = state.ANNOTATIONS_DIR / "annotations.sqlite"
    if not create and not db.is_file():
        return None
    return AnnotationStore(db)


def _uncertainty_rows() -> list[list]:
    """The operator's table: per case and method, the readers' painted hallucination flags against the
    uncertainty map (mean inside the regions vs the rest of the head on the same slices)."""
    store = annotation_store(create=False)
    return [
        [
            r["case_name"],
            r["case_id"],
            r["method"],
            r["flags"],
            r["voxels"],
            r["uncertainty_inside"],
            r["uncertainty_outside"],
            r["ratio"],
        ]
        for r in (store.uncertainty_summary() if store else [])
    ]


def _summary_rows(reader: str | None) -> list[list]:
    store = annotation_store(create=False)
    return [
        [r["method"], r["n"], r["mean_rating"], r["hallucination_rate"], r["artifact_rate"]]
        for r in (store.summary(reader) if store else [])
    ]


def study_code_required() -> bool:
    """Readers must enter the study code: always on a public deployment, elsewhere when one is set."""
    return state.PUBLIC or bool(state.STUDY_CODE)


def check_study_code(code) -> None:
    """gr.Error unless ``code`` is the operator's study code (or none is needed)."""
    if not study_code_required():
        return
    if not state.STUDY_CODE:
        raise gr.Error("The reader study is closed on this server (the operator has set no study code).")
    if not hmac.compare_digest(str(code or "").strip().encode(), state.STUDY_CODE.encode()):
        raise gr.Error("Enter the study code the study's operator gave you in 'Study code'.")


def check_operator(code) -> None:
    """gr.Error unless the caller is the study operator: the operator code when one is set; else a
    local server started with --study-operator (never a public one)."""
    if state.OPERATOR_CODE:
        if hmac.compare_digest(str(code or "").strip().encode(), state.OPERATOR_CODE.encode()):
            return
        raise gr.Error("Exports and the pooled summary are for the study's operator: enter the operator code.")
    if state.STUDY_OPERATOR and not state.PUBLIC:
        return
    raise gr.Error(
        "Exports and the pooled summary are for the study's operator: the server needs "
        "TRANSMRSR_OPERATOR_CODE (or, on a local server, --study-operator)."
    )


def _editor_value(image):
    return {"background": image, "layers": [], "composite": None} if image is not None else None


def _ann_view(case: Case, model_spec, plane, index, compare, other_phi, seed) -> dict:
    """The blinded items of one slice; kept in server-side state, never sent to the browser."""
    compare_phi = float(other_phi) if compare == ANN_COMPARE[1] else None
    items = reader_items(case, plane, int(index), compare_phi, int(seed or 0))  # ValueError: not on this plane
    model = model_of(case, model_spec) if compare_phi is not None else None
    images = [reader_image(case, model, plane, int(index), it["phi"], one_plane=it["one_plane"]) for it in items]
    return {
        "case": case.case_id,
        "sr_path": str(case.sr_path),
        "plane": plane,
        "slice": int(index),
        "items": items,
        "images": images,
        "saved": {},
    }


def _uncertainty_off() -> dict:
    """The uncertainty checkbox of a slice not rated yet: off and locked."""
    return gr.update(value=False, interactive=False)


def ann_show(case_ref, model_spec, plane, index, compare, other_phi, seed):
    """-> view state, Image A, Image B, picked image, editor, status, uncertainty checkbox (locked
    until the slice is rated)."""
    case = case_of(case_ref)
    if case is None:
        return None, None, None, gr.update(), None, ANN_NO_CASE, _uncertainty_off()
    try:
        view = _ann_view(case, model_spec, plane, index, compare, other_phi, seed)
    except ValueError as exc:  # a choice that cannot be shown: say so, show nothing (Save then refuses)
        gr.Warning(public_message(str(exc)))
        return (
            None,
            None,
            None,
            gr.update(),
            None,
            f"Nothing to rate here: {public_message(str(exc))}.",
            _uncertainty_off(),
        )
    labels = " and ".join(it["label"] for it in view["items"])
    status = (
        f"{plane} slice {int(index)} of {case.shape[plane_axis(case, plane)]}: {labels} in random order. "
        "Pick one, rate it, paint what you flag, save; then the other."
    )
    return (
        view,
        view["images"][0],
        view["images"][1],
        gr.update(value=view["items"][0]["label"]),
        _editor_value(view["images"][0]),
        status,
        _uncertainty_off(),
    )


def ann_on_case(case_ref, model_spec, compare, other_phi, seed):
    """A new run: show its middle slice on the plane the network works on."""
    case = case_of(case_ref)
    if case is None:
        return gr.update(), gr.update(), *ann_show(None, model_spec, "coronal", 0, compare, other_phi, seed)
    plane = network_plane(case)
    n = case.shape[plane_axis(case, plane)]
    return (
        gr.update(value=plane),
        gr.update(maximum=n - 1, value=n // 2),
        *ann_show(case_ref, model_spec, plane, n // 2, compare, other_phi, seed),
    )


def ann_on_plane(case_ref, model_spec, plane, compare, other_phi, seed):
    case = case_of(case_ref)
    if case is None:
        return gr.update(), *ann_show(None, model_spec, plane, 0, compare, other_phi, seed)
    n = case.shape[plane_axis(case, plane)]
    return gr.update(maximum=n - 1, value=n // 2), *ann_show(
        case_ref, model_spec, plane, n // 2, compare, other_phi, seed
    )


def ann_on_phi(case_ref, model_spec, plane, index, compare, other_phi, seed):
    if compare != ANN_COMPARE[1]:  # the other φ is not in use
        return (gr.update(),) * 7
    return ann_show(case_ref, model_spec, plane, index, compare, other_phi, seed)


def ann_pick(view, which):
    if not view:
        return None
    labels = [it["label"] for it in view["items"]]
    return _editor_value(view["images"][labels.index(which)] if which in labels else None)


def _rated(view) -> bool:
    """Whether every blinded image of the shown slice has a saved reading (the server's record, not the page's)."""
    return bool(view) and all(it["label"] in view["saved"] for it in view["items"])


def ann_uncertainty(case_ref, view, show):
    """The uncertainty overlay on Image A and Image B, or the plain images: -> Image A, Image B, checkbox.
    Refused (the plain images, the box off) until every image of this slice is rated: the map shows where
    the model is unsure, which would bias a reader who has not rated yet."""
    case = case_of(case_ref)
    if not view or case is None or view.get("sr_path") != str(case.sr_path):
        return None, None, _uncertainty_off()
    plain = view["images"]
    if not show:
        return plain[0], plain[1], gr.update()
    if not _rated(view):
        gr.Warning("Rate every image of this slice first: the uncertainty map is shown only after rating.")
        return plain[0], plain[1], gr.update(value=False)
    try:
        shown = [uncertainty_picture(case, view["plane"], view["slice"], img) for img in plain]
    except ValueError as exc:  # no uncertainty map for this run
        gr.Warning(public_message(str(exc)))
        return plain[0], plain[1], gr.update(value=False)
    return shown[0], shown[1], gr.update()


def _painted_mask(editor) -> np.ndarray | None:
    """Pixels painted on any brush layer of the editor value, ``(H, W)`` bool (None: nothing)."""
    masks = []
    for layer in (editor or {}).get("layers") or []:
        a = np.asarray(layer)
        if a.ndim == 3:
            masks.append(a[..., 3] > 0 if a.shape[2] == 4 else a.any(axis=2))
        elif a.ndim == 2:
            masks.append(a > 0)
    if not masks or not any(m.any() for m in masks):
        return None
    return np.logical_or.reduce([m for m in masks if m.shape == masks[0].shape])


def ann_check(case_ref, view, reader, which, rating, code, finished) -> None:
    """What Save needs, as clear messages (its own step, without outputs: no error badges on the form)."""
    if finished:
        raise gr.Error(ANN_FINISHED)
    check_study_code(code)
    if not (reader or "").strip():
        raise gr.Error("Enter your name in 'Reader' before saving.")
    if len(reader.strip()) > MAX_LENGTHS["reader"]:
        raise gr.Error(f"'Reader' is too long ({MAX_LENGTHS['reader']} characters at most).")
    case = case_of(case_ref)
    if case is None:
        raise gr.Error(ANN_NO_CASE)
    if rating in (None, ""):
        raise gr.Error("Choose a rating from 1 to 5 before saving.")
    if not view or view["sr_path"] != str(case.sr_path):
        raise gr.Error("No blinded images of the current run are shown: choose a plane and slice first.")
    labels = [it["label"] for it in view["items"]]
    if which not in labels:
        raise gr.Error(f"Pick which image you are rating ({' or '.join(labels)}).")


def ann_save(case_ref, view, reader, which, rating, hallucination, artifact, note, editor, code, finished):
    """Store the reading of the picked image (+ its painted region in the case's label NIfTI), with
    the model, its version, the scale, φ and the input's SHA-256."""
    ann_check(case_ref, view, reader, which, rating, code, finished)
    case = case_of(case_ref)
    labels = [it["label"] for it in view["items"]]
    item = view["items"][labels.index(which)]
    mask = _painted_mask(editor)
    region = painted_region(case, view["plane"], mask) if mask is not None else None
    # the trust layer: the SR's uncertainty inside the painted region vs the rest of the head on this slice
    figures = region_uncertainty(case, view["plane"], view["slice"], region)
    reading = Reading(
        reader=reader.strip(),
        case_name=case.name[: MAX_LENGTHS["case_name"]],
        plane=view["plane"],
        slice=view["slice"],
        method=item["method"],
        rating=int(rating),
        phi=item["phi"],
        hallucination=bool(hallucination),
        artifact=bool(artifact),
        note=(note or "").strip(),
        case_id=case.case_id,
        input_sha256=case.input_sha256,
        model=case.model_name,
        model_version=case.model_version,
        scale=case.factor,
        uncertainty_in_region=figures[0] if figures else None,
        uncertainty_outside_region=figures[1] if figures else None,
    )
    try:
        ann_id = annotation_store().add(reading, region, case.shape, case.affine, state.ANNOTATIONS_DIR / "labels")
    except ValueError as exc:
        raise user_error(exc) from None
    view = {**view, "saved": {**view["saved"], which: ann_id}}
    voxels = int(region.sum()) if region is not None else 0
    status = f"Saved reading #{ann_id} of {which}" + (f" with a region of {voxels} voxels." if voxels else ".")
    todo = [label for label in labels if label not in view["saved"]]
    if todo:
        status += f" Rate {' and '.join(todo)} too: the methods are revealed once every image of this slice is saved."
        nxt = todo[0]
    else:
        status += " Unblinded: " + ", ".join(f"{it['label']} was {it['method']}" for it in view["items"]) + "."
        if case.trust is not None and case.trust.uncertainty is not None:
            status += " You may now show the uncertainty map on the images."
        nxt = which
    has_map = case.trust is not None and case.trust.uncertainty is not None
    unc = gr.update(interactive=True) if _rated(view) and has_map else _uncertainty_off()
    return (view, status, gr.update(value=nxt), ann_pick(view, nxt), None, False, False, "", unc)


def ann_finish(reader, code):
    """The reader is done: show their own per-method summary (never the pooled one) and stop saving."""
    check_study_code(code)
    if not (reader or "").strip():
        raise gr.Error("Enter your name in 'Reader' first: the summary is of your readings.")
    rows = _summary_rows(reader.strip()[: MAX_LENGTHS["reader"]])
    return (
        True,
        gr.update(value=rows, visible=True),
        f"Finished. Your readings per method ({sum(r[1] for r in rows)} in all).",
    )


def _export_dir(request: gr.Request | None) -> Path:
    out = state.SESSIONS.folder(session_id(request)) / "exports" / datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    out.mkdir(parents=True, exist_ok=True)
    return out


def ann_pooled(code):
    """The pooled per-method summary and the hallucination flags vs the uncertainty map per case, for the
    operator only."""
    check_operator(code)
    return gr.update(value=_summary_rows(None), visible=True), gr.update(value=_uncertainty_rows(), visible=True)


def ann_export_csv(code, request: gr.Request):
    check_operator(code)
    store = annotation_store(create=False)
    if store is None or not store.rows():
        raise gr.Error("No readings saved yet.")
    return str(store.export_csv(_export_dir(request) / "readings.csv"))


def ann_export_labels(code, request: gr.Request):
    check_operator(code)
    store = annotation_store(create=False)
    files = store.label_files(state.ANNOTATIONS_DIR / "labels") if store else []
    if not files:
        raise gr.Error("No painted regions saved yet.")
    out = _export_dir(request)  # copies in the operator's private session folder, the one the server hands out
    return [str(shutil.copy2(f, out / f.name)) for f in files]


def build_tab(case_state: gr.State, model_spec: gr.Textbox) -> None:
    """Reader study on the current case: blinded images of one slice, rating, flags, painted region, note."""
    seed = gr.State(lambda: random.randrange(2**31))  # one blinding seed per browser session
    view = gr.State(None)
    finished = gr.State(False)
    gr.Markdown(
        "Blinded reader study on the volume run in the Super-resolve tab: the SR and a comparison (cubic "
        "interpolation or TransMRSR at another φ) are shown as **Image A / Image B** in random order. Rate each, "
        "flag and paint what looks wrong, save. When you are done, press **Finish** to see your own results."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            reader = gr.Textbox(
                label="Reader",
                placeholder="your name or initials",
                max_length=MAX_LENGTHS["reader"],
                elem_id="ann-reader",
            )
            code = gr.Textbox(
                label="Study code",
                type="password",
                visible=study_code_required(),
                placeholder="from the study's operator",
                max_length=200,
                elem_id="ann-code",
            )
            compare = gr.Radio(ANN_COMPARE, value=ANN_COMPARE[0], label="Compare the SR against", elem_id="ann-compare")
            other_phi = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Other φ (when comparing φ)", elem_id="ann-phi")
            plane = gr.Radio(list(PLANES)[::-1], value="coronal", label="Plane", elem_id="ann-plane")
            index = gr.Slider(0, 1, value=0, step=1, label="Slice", elem_id="ann-slice")
            which = gr.Radio(["Image A", "Image B"], value="Image A", label="Image you rate", elem_id="ann-image")
            rating = gr.Radio(ANN_RATINGS, value=None, label="Quality (1–5)", elem_id="ann-rating")
            with gr.Row():
                hallucination = gr.Checkbox(False, label="Hallucination", elem_id="ann-hallucination")
                artifact = gr.Checkbox(False, label="Artifact", elem_id="ann-artifact")
            note = gr.Textbox(label="Note", lines=2, max_length=MAX_LENGTHS["note"], elem_id="ann-note")
            with gr.Row():
                save = gr.Button("Save reading", variant="primary", elem_id="ann-save")
                finish = gr.Button("Finish", elem_id="ann-finish")
            status = gr.Markdown(ANN_NO_CASE, elem_id="ann-status")
            mine = gr.Dataframe(
                headers=ANN_SUMMARY_HEADERS,
                label="Your readings per method",
                interactive=False,
                visible=False,
                elem_id="ann-my-summary",
            )
        with gr.Column(scale=3):
            with gr.Row():
                img_a = gr.Image(label="Image A", interactive=False, height=300, format="png", elem_id="ann-image-a")
                img_b = gr.Image(label="Image B", interactive=False, height=300, format="png", elem_id="ann-image-b")
            show_unc = gr.Checkbox(False, label=ANN_UNCERTAINTY_LABEL, interactive=False, elem_id="ann-uncertainty")
            editor = gr.ImageEditor(
                label="Paint the region you flag (brush) on the image you rate",
                type="numpy",
                image_mode="RGBA",
                sources=[],
                transforms=[],
                layers=False,
                format="png",
                interactive=True,
                brush=gr.Brush(colors=["#ff2d2d"], default_color="#ff2d2d", color_mode="fixed", default_size=6),
                eraser=gr.Eraser(default_size=10),
                elem_id="ann-editor",
            )
    with gr.Accordion("Study operator: pooled results and exports", open=False):
        op_code = gr.Textbox(
            label="Operator code",
            type="password",
            visible=bool(state.OPERATOR_CODE),
            max_length=200,
            elem_id="ann-operator-code",
        )
        with gr.Row():
            pooled_btn = gr.Button("Show the pooled summary", elem_id="ann-pooled")
            csv_btn = gr.Button("Export readings (CSV)", elem_id="ann-export-csv")
            labels_btn = gr.Button("Export label NIfTIs", elem_id="ann-export-labels")
        summary = gr.Dataframe(
            headers=ANN_SUMMARY_HEADERS,
            label="All readers, per method",
            interactive=False,
            visible=False,
            elem_id="ann-summary",
        )
        unc_summary = gr.Dataframe(
            headers=ANN_UNCERTAINTY_HEADERS,
            label=(
                "Hallucination flags vs the uncertainty map, per case: mean uncertainty inside the painted regions "
                "and in the rest of the head on the same slices (input intensity units; above 1: higher where "
                "readers flagged)"
            ),
            interactive=False,
            visible=False,
            elem_id="ann-uncertainty-summary",
        )
        with gr.Row():
            csv_file = gr.File(label="Readings (CSV)", elem_id="ann-csv")
            label_files = gr.File(
                label="Label NIfTIs (aligned with the SR)", file_count="multiple", elem_id="ann-labels"
            )

    shown = [view, img_a, img_b, which, editor, status, show_unc]
    case_state.change(ann_on_case, [case_state, model_spec, compare, other_phi, seed], [plane, index, *shown])
    plane.input(ann_on_plane, [case_state, model_spec, plane, compare, other_phi, seed], [index, *shown])
    shown_in = [case_state, model_spec, plane, index, compare, other_phi, seed]
    gr.on([index.input, compare.input], ann_show, shown_in, shown, trigger_mode="always_last")
    other_phi.input(ann_on_phi, shown_in, shown, trigger_mode="always_last")
    which.input(ann_pick, [view, which], editor)
    save.click(ann_check, [case_state, view, reader, which, rating, code, finished], None).success(
        ann_save,
        [case_state, view, reader, which, rating, hallucination, artifact, note, editor, code, finished],
        [view, status, which, editor, rating, hallucination, artifact, note, show_unc],
        concurrency_limit=1,  # one writer per process (the label file lock covers several processes)
    )
    finish.click(ann_finish, [reader, code], [finished, mine, status])
    show_unc.input(ann_uncertainty, [case_state, view, show_unc], [img_a, img_b, show_unc])
    pooled_btn.click(ann_pooled, op_code, [summary, unc_summary])
    csv_btn.click(ann_export_csv, op_code, csv_file)
    labels_btn.click(ann_export_labels, op_code, label_files)

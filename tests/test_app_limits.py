"""Memory limits of the real app (issue 15): a gzip bomb is refused from its header, without being
inflated, in one line that names no server path; a normal request's peak memory is measured.

The server is ``python app.py`` (``apphelpers.App``) driven through ``gradio_client``. Memory is
the server process's peak resident set (``VmHWM`` in ``/proc/<pid>/status``), reset before each
measured request by writing 5 to ``/proc/<pid>/clear_refs`` (Linux).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nibabel as nib
import pytest

from apphelpers import gzip_bomb, running_app

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status")

#: Peak resident memory a normal request (the 48 x 56 x 44 T1 crop, tiny model, both planes) may add
#: to the server's resident memory before it; measured at +14 MiB on the 2-core CPU machine.
NORMAL_REQUEST_MIB = 150
#: What refusing the bomb may add: it is refused from its 352-byte header (inflating it would take
#: 64 MB of payload and a 1 GiB read buffer, 1.9 GiB as float32).
BOMB_REQUEST_MIB = 30


def status_mib(pid: int, key: str) -> float:
    """A memory figure of process ``pid`` from ``/proc/<pid>/status`` (``VmHWM``, ``VmRSS``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # the file gives kB
    raise KeyError(key)


def reset_peak(pid: int) -> None:
    """Make ``VmHWM`` restart from the current resident size (skip where the kernel refuses)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError as exc:
        pytest.skip(f"cannot reset the peak resident size here ({exc.strerror})")
    assert status_mib(pid, "VmHWM") <= status_mib(pid, "VmRSS") + 1


def peak_during(pid: int, request) -> tuple[float, float, object]:
    """Run ``request()``; return (resident MiB before, peak MiB during, its result or exception)."""
    reset_peak(pid)
    before = status_mib(pid, "VmRSS")
    try:
        result = request()
    except Exception as exc:  # the caller checks what was raised
        result = exc
    return before, status_mib(pid, "VmHWM"), result


@pytest.fixture(scope="module")
def server(tiny_dir, tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("work"), tiny_dir) as app:
        yield app, app.url


@pytest.fixture(scope="module")
def warm(server, t1_crop):
    """One normal request first, so that the model and lazy imports are loaded before measuring."""
    from gradio_client import Client, handle_file

    app, url = server
    client = Client(url, verbose=False)
    client.predict(handle_file(str(t1_crop)), 4, 0.5, api_name="/super_resolve")
    return app, client


def test_gzip_bomb_is_refused_unexpanded_in_one_line_without_server_paths(warm, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    app, client = warm
    bomb = gzip_bomb(tmp_path / "bomb.nii.gz")
    before, peak, result = peak_during(
        app.proc.pid, lambda: client.predict(handle_file(str(bomb)), 4, 0.5, api_name="/super_resolve")
    )
    assert peak - before < BOMB_REQUEST_MIB, f"the server grew {peak - before:.0f} MiB refusing the bomb"
    assert isinstance(result, AppError), f"the bomb was not refused: {result!r}\n{app.log()}"
    message = str(result)
    assert len(message.strip().splitlines()) == 1, message
    assert "bomb.nii.gz" in message and "limit" in message and "Traceback" not in message, message
    assert not re.search(r"(?<![\w.])/\w", message), f"a server path in: {message}"
    assert str(tmp_path) not in message and "gradio" not in message.lower(), message


def test_peak_memory_of_a_normal_request_is_bounded(warm, t1_crop):
    from gradio_client import handle_file

    app, client = warm
    before, peak, result = peak_during(
        app.proc.pid, lambda: client.predict(handle_file(str(t1_crop)), 4, 0.5, api_name="/super_resolve")
    )
    assert not isinstance(result, Exception), f"{result!r}\n{app.log()}"
    sr_path, info = result
    assert nib.load(sr_path).shape == nib.load(str(t1_crop)).shape and info["scale"] == 4
    grown = peak - before
    print(f"server resident {before:.0f} MiB before the request, peak {peak:.0f} MiB (+{grown:.0f} MiB)")
    assert grown < NORMAL_REQUEST_MIB, f"a 48x56x44 request raised the server's peak by {grown:.0f} MiB"

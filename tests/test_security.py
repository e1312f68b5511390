"""Security defaults of the demo, checked on the real stack where it matters.

One page (real bundled Triton, real rembg) is launched for the module with a login
(``auth=("u", "p")``) and a 1 MB upload limit. Checked: loopback by default and a warning
otherwise; no API without login; oversized uploads refused with a clear message; files
outside the upload folder refused; Triton and the page listen on 127.0.0.1 only; uploaded
photos deleted after their request (and kept in a private folder by `bodyshape demo`);
generated files in the system temp dir, deleted on close; runtime dependencies pinned to
ranges.
"""

import argparse
import hashlib
import json
import shutil
import tempfile
import tomllib
import warnings
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from bodyshape.assets import have_u2netp
from bodyshape.errors import BodyShapeError
from bodyshape.paths import REPO_DIR

AUTH = ("u", "p")
UPLOAD_LIMIT_MB = 1.0


def needs_stack(test):
    """Marks of the tests that use the module's page (real Triton + rembg)."""
    for mark in (
        pytest.mark.slow,
        pytest.mark.triton,
        pytest.mark.skipif(not have_u2netp(), reason="u2netp.onnx missing: run `bodyshape setup`"),
    ):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def stack():
    from demo.loadtest import local_stack

    with local_stack(auth=AUTH, max_upload_mb=UPLOAD_LIMIT_MB) as s:
        yield s


@pytest.fixture(scope="module")
def session(stack):
    """An httpx session logged in to the page (the browser's cookie)."""
    with httpx.Client(base_url=stack.url, timeout=60) as c:
        r = c.post("/login", data={"username": AUTH[0], "password": AUTH[1]})
        assert r.status_code == 200, r.text
        yield c


def _unique_photo(tmp_path: Path, name: str = "front.jpg", view: str = "front") -> Path:
    """An example photo with a few unique bytes appended (same pixels, a new upload)."""
    from demo.make_assets import load_examples

    p = tmp_path / name
    p.write_bytes(Path(load_examples()[0][view]).read_bytes() + f"\0{tmp_path}".encode())
    return p


def _upload(session: httpx.Client, path: Path) -> str:
    r = session.post("/gradio_api/upload", files={"files": (path.name, path.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()[0]


# ----------------------------------------------------------------------------- bind address
def _demo_args(*argv: str) -> argparse.Namespace:
    from demo import app

    p = argparse.ArgumentParser()
    app.add_arguments(p)
    return p.parse_args(list(argv))


def test_default_bind_is_loopback_and_other_hosts_warn(monkeypatch):
    from demo import app
    from demo.security import warn_if_exposed

    monkeypatch.delenv("BODYSHAPE_DEMO_AUTH", raising=False)
    args = _demo_args()
    assert args.host == "127.0.0.1" and args.auth is None
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert warn_if_exposed(host, None) is False
    with pytest.warns(UserWarning, match=r"0\.0\.0\.0.*no --auth given"):
        assert warn_if_exposed("0.0.0.0", None)
    with pytest.warns(UserWarning, match="192.168.1.5") as rec:
        warn_if_exposed("192.168.1.5", ("a", "b"))
    assert "no --auth" not in str(rec[0].message)
    # The real `bodyshape demo` entry point warns before it starts anything (the invalid
    # --concurrency makes it stop right after the warning, before Triton or the page start).
    with pytest.warns(UserWarning, match="0.0.0.0"), pytest.raises(BodyShapeError, match="concurrency"):
        app.run(_demo_args("--host", "0.0.0.0", "--concurrency", "0"))


def test_demo_keeps_uploads_in_a_private_folder(monkeypatch):
    """`bodyshape demo` moves Gradio's upload folder out of the shared, world-readable <tmp>/gradio."""
    from gradio.utils import get_upload_folder

    from demo.security import private_upload_dir

    monkeypatch.setenv("GRADIO_TEMP_DIR", "/srv/explicit-choice")
    assert private_upload_dir() == Path("/srv/explicit-choice")  # an explicit folder is kept
    monkeypatch.delenv("GRADIO_TEMP_DIR")
    folder = private_upload_dir()
    try:
        assert Path(get_upload_folder()) == folder
        assert folder.is_dir() and (folder.stat().st_mode & 0o077) == 0  # owner only
        assert folder.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- login
def test_auth_flag_is_user_colon_password():
    from demo.security import parse_auth

    assert parse_auth(None) is None and parse_auth("") is None
    assert parse_auth("me:se:cret") == ("me", "se:cret")
    for bad in ("me", "me:", ":secret"):
        with pytest.raises(BodyShapeError, match="USER:PASSWORD"):
            parse_auth(bad)


@needs_stack
def test_login_is_required(stack):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AuthenticationError

    from demo.make_assets import load_examples

    ex = load_examples()[0]
    with httpx.Client(base_url=stack.url, timeout=30) as anon:
        for method, route in (
            ("GET", "/config"),
            ("GET", "/gradio_api/info"),
            ("POST", "/gradio_api/queue/join"),
            ("POST", "/gradio_api/upload"),
            ("POST", "/gradio_api/run/reconstruct"),
            ("GET", "/gradio_api/queue/data?session_hash=x"),
        ):
            r = anon.request(method, route, json={} if method == "POST" else None)
            assert r.status_code in (401, 403), (route, r.status_code, r.text[:200])
        assert anon.post("/login", data={"username": "u", "password": "wrong"}).status_code == 400
    with pytest.raises((AuthenticationError, ValueError), match="(?i)login|credentials"):
        Client(stack.url, auth=("u", "wrong"), verbose=False)
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises different types by version
        Client(stack.url, verbose=False).predict(
            handle_file(ex["front"]), handle_file(ex["side"]), 170.0, "cm", api_name="/reconstruct"
        )
    client = Client(stack.url, auth=AUTH, verbose=False, download_files=False)
    try:
        out = client.predict(
            handle_file(ex["front"]), handle_file(ex["side"]), 170.0, "cm", api_name="/reconstruct"
        )
    finally:
        client.close()
    assert out[0].startswith("**Done"), out[0]


@needs_stack
def test_no_direct_route_around_the_queue(session):
    """Logged in, the direct REST route (``/gradio_api/run/<api_name>``) is closed: it would skip
    the concurrency limit and the queue size, and turn a refused request into a success."""
    r = session.post("/gradio_api/run/reconstruct", json={"data": [None, None, 170.0, "cm", None]})
    assert r.status_code == 404 and "join the queue" in r.text, (r.status_code, r.text[:200])


# ----------------------------------------------------------------------------- uploads
@needs_stack
def test_upload_over_the_limit_is_refused(stack, session, tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(_unique_photo(tmp_path).read_bytes() + b"\0" * int(1.5 * 2**20))
    r = session.post("/gradio_api/upload", files={"files": (big.name, big.read_bytes(), "image/jpeg")})
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert "maximum allowed size" in r.text and str(2**20) in r.text
    from gradio.utils import get_upload_folder

    digest = hashlib.sha256(big.read_bytes()).hexdigest()
    left = [p for p in Path(get_upload_folder()).rglob("big.jpg") if _sha(p) == digest]
    assert not left, left  # nothing of the refused file stays on disk
    # Under the limit is accepted (the same photo without the padding).
    assert Path(_upload(session, _unique_photo(tmp_path, "small.jpg"))).is_file()


def _raw_reconstruct(session: httpx.Client, front: dict, side: dict, height: float) -> dict:
    """The button's event through Gradio's queue API as the browser sends it -> last message."""
    import uuid

    config = session.get("/config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "reconstruct")
    session_hash = uuid.uuid4().hex[:10]
    body = {"data": [front, side, height, "cm", None, "tight"], "fn_index": fn_index, "session_hash": session_hash,
            "event_data": None, "trigger_id": None}  # fmt: skip
    r = session.post("/gradio_api/queue/join", json=body)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    with session.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    raise AssertionError("the event stream ended without a result")


@needs_stack
def test_files_outside_the_upload_folder_are_refused(stack, session, tmp_path):
    """The button's event skips Gradio's preprocessing: Gradio's path check must still apply."""
    secret = _unique_photo(tmp_path, "secret.jpg")
    side = _unique_photo(tmp_path, "side.jpg", "side")

    def file_data(path: str) -> dict:
        return {"path": path, "meta": {"_type": "gradio.FileData"}}

    msg = _raw_reconstruct(session, file_data(str(secret)), file_data(str(side)), 170.0)
    assert msg["success"] is False, msg  # refused before the handler runs
    assert "**Done" not in json.dumps(msg)
    assert secret.is_file()  # and nothing outside the upload folder is ever deleted
    # The same request with the photos uploaded first is served (the test can tell the two apart).
    msg = _raw_reconstruct(
        session, file_data(_upload(session, secret)), file_data(_upload(session, side)), 170.0
    )
    assert msg["success"] is True and msg["output"]["data"][0].startswith("**Done"), msg


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@needs_stack
def test_uploaded_photos_are_deleted_after_the_request(stack, session, tmp_path):
    from gradio_client import Client, handle_file

    front, side = _unique_photo(tmp_path, "f.jpg"), _unique_photo(tmp_path, "s.jpg", "side")
    # The same bytes under the same name land in the same place (content-addressed folders):
    # upload them first to know where the page keeps them, and to see that they are there.
    up_front, up_side = Path(_upload(session, front)), Path(_upload(session, side))
    assert up_front.is_file() and up_side.is_file()
    client = Client(stack.url, auth=AUTH, verbose=False, download_files=False)
    try:
        out = client.predict(handle_file(front), handle_file(side), 181.0, "cm", api_name="/reconstruct")
    finally:
        client.close()
    assert out[0].startswith("**Done"), out[0]
    assert not up_front.exists() and not up_side.exists()
    assert not up_front.parent.exists()  # its per-upload folder too
    from gradio.utils import get_upload_folder

    digests = {_sha(front), _sha(side)}
    left = [p for p in Path(get_upload_folder()).rglob("*") if p.is_file() and _sha(p) in digests]
    assert not left, left
    # The generated downloads are in a private folder under the system temp dir.
    out_root = stack.demo.handler.out_root
    assert out_root.resolve().is_relative_to(Path(tempfile.gettempdir()).resolve())
    assert (out_root.stat().st_mode & 0o077) == 0  # mkdtemp: owner only
    assert any(out_root.iterdir())


@needs_stack
def test_generated_files_are_removed_when_the_page_closes(stack):
    from demo.backend import TritonBackend
    from demo.page import serve_page

    with serve_page(TritonBackend(stack.triton.http_url)) as page:
        out_root = page.demo.handler.out_root
        (out_root / "x").mkdir()
        (out_root / "x" / "body.obj").write_text("v 0 0 0\n")
        assert out_root.is_dir()
    assert not out_root.exists()


# ----------------------------------------------------------------------------- listening sockets
def _listening(proto_files=("tcp", "tcp6")) -> dict[int, tuple[str, int]]:
    """socket inode -> (local address, port) for every listening TCP socket (/proc/net)."""
    out = {}
    for name in proto_files:
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] != "0A":  # TCP_LISTEN
                continue
            addr_hex, port_hex = f[1].split(":")
            out[int(f[9])] = (_addr(addr_hex), int(port_hex, 16))
    return out


def _addr(h: str) -> str:
    import ipaddress

    raw = bytes.fromhex(h)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc/net/tcp6: four little-endian 32-bit words; ::ffff:127.0.0.1 is IPv4's loopback
    v6 = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return str(v6.ipv4_mapped or v6)


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


@needs_stack
def test_triton_and_page_listen_on_loopback_only(stack):
    from demo.loadtest import _group_pids

    triton = stack.triton
    cmdline = Path(f"/proc/{triton.pid}/cmdline").read_bytes().decode().split("\0")
    assert "--http-address=127.0.0.1" in cmdline and "--grpc-address=127.0.0.1" in cmdline
    assert "--allow-metrics=false" in cmdline
    listening = _listening()
    group = _group_pids(triton.pid)
    assert triton.pid in group and len(group) >= 3  # server + the two Python backend stubs
    triton_sockets = [listening[i] for pid in group for i in _socket_inodes(pid) if i in listening]
    ports = {port for _, port in triton_sockets}
    assert {triton.http_port, triton.grpc_port} <= ports, triton_sockets
    assert all(addr == "127.0.0.1" for addr, _ in triton_sockets), triton_sockets
    page = [a for a, port in listening.values() if port == stack.port]
    assert page == ["127.0.0.1"], page


# ----------------------------------------------------------------------------- dependencies
def test_runtime_dependencies_have_upper_bounds():
    """Every dependency, extras included (an extra naming the project itself excepted)."""
    project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"]) + [
        d for extra in project["optional-dependencies"].values() for d in extra
    ]
    deps = [Requirement(d) for d in deps]
    deps = [d for d in deps if d.name != project["name"]]
    assert len(deps) >= 15
    unbounded = []
    for dep in deps:
        if not any(s.operator in ("<", "<=", "==", "===", "~=") for s in dep.specifier):
            unbounded.append(str(dep))
    assert not unbounded, f"runtime dependencies without an upper bound: {unbounded}"
    assert "<3." in project["requires-python"]  # a Python release known to work, not any future one

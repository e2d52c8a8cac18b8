"""Downloads against a real HTTP server on 127.0.0.1 serving a zip the test builds."""

import hashlib
import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cellscreen.data.fetch import fetch_dataset
from cellscreen.data.sources import get_profile
from cellscreen.errors import UserError
from tests.conftest import make_malaria_like

PROFILE = get_profile("malaria-nih")


def build_zip(tmp_path, extra: dict[str, bytes] | None = None) -> bytes:
    root = make_malaria_like(tmp_path / "src", {"C1": {"Parasitized": 2, "Uninfected": 2}})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(root.rglob("*.png")):
            zf.write(path, path.relative_to(root.parent).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


class Server:
    """Serves /full (with Range support), /truncated (closes half-way) and /broken-then-full."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                data = server.payload
                if self.path == "/missing":
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range") and self.path == "/full":
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if self.path == "/truncated":
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def fetch(server, path, data_root, payload, **kw):
    options = dict(url=server.url(path), sha256=hashlib.sha256(payload).hexdigest(), size=len(payload), progress=False)
    options.update(kw)
    return fetch_dataset(PROFILE, data_root, **options)


def leftovers(data_root):
    return sorted(p.relative_to(data_root).as_posix() for p in data_root.rglob("*"))


def test_download_verify_unpack(tmp_path):
    payload = build_zip(tmp_path)
    with Server(payload) as server:
        root = fetch(server, "/full", tmp_path / "data", payload)
        assert root == tmp_path / "data" / "malaria-nih" / "cell_images"
        assert len(list(root.rglob("*.png"))) == 4
        # present already: nothing is downloaded again
        fetch(server, "/full", tmp_path / "data", payload)
        assert len(server.requests) == 1
    assert leftovers(tmp_path / "data")[:2] == [".downloads", "malaria-nih"]
    assert not any(".unpacking" in p or p.endswith(".part") for p in leftovers(tmp_path / "data"))


def test_wrong_checksum_fails_cleanly(tmp_path):
    payload = build_zip(tmp_path)
    data_root = tmp_path / "data"
    with Server(payload) as server, pytest.raises(UserError, match="checksum mismatch"):
        fetch(server, "/full", data_root, payload, sha256="0" * 64)
    assert not (data_root / "malaria-nih" / "cell_images").exists()
    assert not any(p.is_file() for p in data_root.rglob("*"))  # the bad download was deleted


def test_truncated_download_fails_then_resumes(tmp_path):
    payload = build_zip(tmp_path)
    data_root = tmp_path / "data"
    with Server(payload) as server:
        with pytest.raises(UserError, match="run the same command again to resume"):
            fetch(server, "/truncated", data_root, payload)
        assert not (data_root / "malaria-nih" / "cell_images").exists()
        assert not list((data_root / "malaria-nih").iterdir())  # no half dataset
        part = data_root / ".downloads" / "malaria-nih.zip.part"
        assert 0 < part.stat().st_size < len(payload)
        root = fetch(server, "/full", data_root, payload)
        assert server.requests[-1] == ("/full", f"bytes={len(payload) // 2}-")
    assert len(list(root.rglob("*.png"))) == 4
    assert not part.exists()


def test_wrong_size_and_http_errors(tmp_path):
    payload = build_zip(tmp_path)
    with Server(payload) as server:
        with pytest.raises(UserError, match="expected"):
            fetch(server, "/full", tmp_path / "a", payload, size=len(payload) - 10)
        with pytest.raises(UserError, match="HTTP 404"):
            fetch(server, "/missing", tmp_path / "b", payload)
    with pytest.raises(UserError, match="cannot reach"):
        fetch(server, "/full", tmp_path / "c", payload)  # server is gone
    for folder in ("a", "b", "c"):
        assert not (tmp_path / folder / "malaria-nih" / "cell_images").exists()


def test_archive_with_unsafe_path_is_refused(tmp_path):
    payload = build_zip(tmp_path, extra={"../evil.txt": b"x"})
    with Server(payload) as server, pytest.raises(UserError, match="unsafe path"):
        fetch(server, "/full", tmp_path / "data", payload)
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "data" / "malaria-nih" / "cell_images").exists()
    assert not [p for p in (tmp_path / "data" / "malaria-nih").iterdir()]
    assert not any((tmp_path / "data" / ".downloads").iterdir())  # the refused archive is not kept


def test_fetch_command_end_to_end(tmp_path):
    from tests.clitools import run

    payload = build_zip(tmp_path)
    digest = hashlib.sha256(payload).hexdigest()
    with Server(payload) as server:
        base = ("data", "fetch", "malaria-nih", "--url", server.url("/full"), "--size", str(len(payload)), "-q")
        bad = run(*base, "--data", str(tmp_path / "bad"), "--sha256", "f" * 64)
        assert bad.returncode == 2 and "checksum mismatch" in bad.stderr
        assert not (tmp_path / "bad" / "malaria-nih" / "cell_images").exists()
        good = run(*base, "--data", str(tmp_path / "good"), "--sha256", digest)
        assert good.returncode == 0, good.stderr
        assert "is ready in" in good.stdout
    assert len(list((tmp_path / "good" / "malaria-nih" / "cell_images").rglob("*.png"))) == 4


def github_archive(top: str, files: dict[str, bytes]) -> bytes:
    """A zip laid out as GitHub's archive of a repository: every file under one ``<repository>-<branch>/``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"{top}/{name}", data)
    return buffer.getvalue()


SMEAR_ARCHIVES = {
    "chula-rbc12": ("Chula-RBC-12-Dataset-main", {"Dataset/1.jpg": b"jpeg", "Label/1.txt": b"10 20 0\n",
                                                   "README.md": b"# Chula"}, "Dataset/1.jpg"),
    "txl-pbc": ("TXL-PBC_Dataset-main", {"TXL_PBC/images/train/a.jpg": b"jpeg",
                                         "TXL_PBC/labels/train/a.txt": b"1 0.5 0.5 0.1 0.1\n",
                                         "TXL_PBC/data.yaml": b"nc: 3\n"}, "TXL_PBC/images/train/a.jpg"),
}


@pytest.mark.parametrize("name", sorted(SMEAR_ARCHIVES))
def test_a_smear_set_without_a_recorded_checksum_is_fetched_and_its_hash_printed(name, tmp_path, capsys):
    from cellscreen.data.sources import resolve_fields_dir

    top, files, image = SMEAR_ARCHIVES[name]
    payload = github_archive(top, files)
    profile = get_profile(name)
    assert profile.download.sha256 is None and profile.download.url.startswith("https://github.com/")
    with Server(payload) as server:
        root = fetch_dataset(profile, tmp_path / "data", url=server.url("/full"), progress=False)
        assert root == tmp_path / "data" / "smears" / name  # the archive's own top folder is renamed
        assert (root / image).read_bytes() == b"jpeg"
        assert resolve_fields_dir(profile, None, data=str(tmp_path / "data")) == root
        printed = capsys.readouterr().out
        assert hashlib.sha256(payload).hexdigest() in printed and "no checksum is recorded" in printed
        with pytest.raises(UserError, match="checksum mismatch"):  # a hash given is held to
            fetch_dataset(profile, tmp_path / "other", url=server.url("/full"), sha256="0" * 64, progress=False)
    assert not (tmp_path / "other" / "smears" / name).exists()
    assert not any(".unpacking" in p for p in leftovers(tmp_path / "data"))


def test_an_unchecked_download_is_started_again_not_resumed(tmp_path):
    top, files, image = SMEAR_ARCHIVES["chula-rbc12"]
    payload = github_archive(top, files)
    profile = get_profile("chula-rbc12")
    with Server(payload) as server:
        with pytest.raises(UserError, match="start again"):
            fetch_dataset(profile, tmp_path / "data", url=server.url("/truncated"), progress=False)
        assert not (tmp_path / "data" / "smears" / "chula-rbc12").exists()
        root = fetch_dataset(profile, tmp_path / "data", url=server.url("/full"), progress=False)
        assert server.requests[-1] == ("/full", None)  # no Range: two requests may not give the same bytes
    assert (root / image).is_file()


def test_an_archive_with_several_top_folders_is_refused_for_a_smear_set(tmp_path):
    payload = build_zip(tmp_path, extra={"other/x.txt": b"1"})  # cell_images/ and other/
    with Server(payload) as server, pytest.raises(UserError, match="top folders"):
        fetch_dataset(get_profile("txl-pbc"), tmp_path / "data", url=server.url("/full"), progress=False)
    assert not (tmp_path / "data" / "smears" / "txl-pbc").exists()


def test_fetch_command_for_a_smear_set(tmp_path):
    from tests.clitools import run_here

    top, files, _ = SMEAR_ARCHIVES["txl-pbc"]
    payload = github_archive(top, files)
    with Server(payload) as server:
        done = run_here("data", "fetch", "txl-pbc", "--url", server.url("/full"), "--data", str(tmp_path), "-q")
    assert done.returncode == 0, done.stderr
    assert f"sha256 {hashlib.sha256(payload).hexdigest()}" in done.stdout
    assert f"txl-pbc is ready in {tmp_path / 'smears' / 'txl-pbc'}" in done.stdout

"""Download + checksum + safe extraction, against a local HTTP server."""
from __future__ import annotations

import functools
import hashlib
import http.server
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from data_modules.download import (
    ChecksumError,
    UnsafeArchiveError,
    download,
    fetch,
    safe_extract,
)
from data_modules.sources import movielens

U_DATA = "".join(
    f"{u}\t{i}\t{(u + i) % 5 + 1}\t{1000 + 10 * i + u}\n" for u in (1, 2, 3) for i in (1, 2, 3, 4)
)
U_ITEM = "".join(
    f"{i}|Movie {i} (199{i})|01-Jan-199{i}||http://x|"
    + "|".join("1" if g == i else "0" for g in range(19))
    + "\n"
    for i in (1, 2, 3, 4)
)
U_USER = "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|32067\n"


@pytest.fixture()
def server(tmp_path):
    """Serve ``tmp_path/www`` on 127.0.0.1; yields (folder, base url)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def make_zip(path: Path, members: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ml100k_zip(path: Path) -> str:
    return make_zip(path, {"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM, "ml-100k/u.user": U_USER})


def test_movielens_downloads_verifies_and_loads(server, tmp_path):
    www, url = server
    digest = ml100k_zip(www / "ml-100k.zip")
    root = tmp_path / "data"
    data = movielens("ml-100k", root=root, base_url=url, checksum=["sha256", digest], progress=False)
    assert (root / "ml-100k" / "u.data").is_file()
    assert data.num_users == 3 and data.num_items == 4 and len(data.interactions) == 12
    assert data.item_features.loc[0, "genres"] == ["Action"]  # flag 1 = Action
    assert int(data.item_features.loc[2, "year"]) == 1993
    assert not list(root.glob(".extract-*")) and not list(root.glob("*.part"))
    (www / "ml-100k.zip").unlink()  # present files: no second download
    again = movielens("ml-100k", root=root, base_url=url, checksum=["sha256", digest], cache=False)
    assert len(again.interactions) == 12


def test_md5_in_table_is_checked(server, tmp_path):
    www, url = server
    ml100k_zip(www / "ml-100k.zip")  # not the official archive: its md5 differs from the table's
    root = tmp_path / "data"
    with pytest.raises(ChecksumError, match="md5 is .* expected 0e33842e24a9c977be4e0107933c0723"):
        movielens("ml-100k", root=root, base_url=url, progress=False)
    assert not (root / "ml-100k").exists()
    assert not list(root.glob("ml-100k.zip*"))  # neither the archive nor a .part file stays


def test_download_checksum_mismatch(server, tmp_path):
    www, url = server
    (www / "f.bin").write_bytes(b"hello")
    good = hashlib.sha256(b"hello").hexdigest()
    saved = download(f"{url}/f.bin", tmp_path / "f.bin", ("sha256", good), progress=False)
    assert saved.read_bytes() == b"hello"
    with pytest.raises(ChecksumError, match="sha256"):
        download(f"{url}/f.bin", tmp_path / "g.bin", ("sha256", "0" * 64), progress=False)
    assert not (tmp_path / "g.bin").exists() and not (tmp_path / "g.bin.part").exists()


def test_missing_url_is_a_clear_error(server, tmp_path):
    _, url = server
    with pytest.raises(OSError, match="check the network or the url/base_url"):
        download(f"{url}/nothing.zip", tmp_path / "x.zip", progress=False)


@pytest.mark.parametrize("member", ["../evil", "ok/../../evil", "/abs/evil", "C:/evil"])
def test_unsafe_member_is_refused(server, tmp_path, member):
    www, url = server
    make_zip(www / "bad.zip", {"fine/a.txt": "a", member: "x"})
    root = tmp_path / "data" / "inner"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        fetch(f"{url}/bad.zip", root, None, progress=False)
    assert not (tmp_path / "data" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not (root / "fine").exists()  # nothing was extracted at all
    assert not list(root.glob(".extract-*"))


def _zip_with_link(path: Path, name: str, target: str) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo(name)
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, target)


def test_link_escaping_the_target_is_refused(tmp_path):
    _zip_with_link(tmp_path / "link.zip", "pkg/link", "../../outside")
    with pytest.raises(UnsafeArchiveError, match="link"):
        safe_extract(tmp_path / "link.zip", tmp_path / "out")
    assert not (tmp_path / "out" / "pkg").exists()


def test_every_link_is_refused_even_one_inside_the_target(tmp_path):
    _zip_with_link(tmp_path / "link.zip", "pkg/link", "real.txt")
    with zipfile.ZipFile(tmp_path / "link.zip", "a") as archive:
        archive.writestr("pkg/real.txt", "content")
    with pytest.raises(UnsafeArchiveError, match="'pkg/link' is a symbolic link"):
        safe_extract(tmp_path / "link.zip", tmp_path / "out")
    assert not (tmp_path / "out" / "pkg").exists()


def test_chained_links_cannot_escape(server, tmp_path):
    """Each link alone stays inside (s -> .., p -> s/.., q -> p/..); followed in turn,
    q/file lands levels above the target. Links are refused, so nothing lands anywhere."""
    www, url = server
    with zipfile.ZipFile(www / "chain.zip", "w") as archive:
        for name, target in (("d/s", ".."), ("d/p", "s/.."), ("d/q", "p/..")):
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
        archive.writestr("d/q/escaped.txt", "x")
        archive.writestr("d/q/q2/escaped.txt", "x")
    root = tmp_path / "a" / "b" / "c" / "data"
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        fetch(f"{url}/chain.zip", root, None, progress=False)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (root / "d").exists() and not list(root.glob(".extract-*"))


def test_extraction_merges_into_existing_folder(tmp_path):
    # The shared ml-1m folder may already hold movies.dat/users.dat without ratings.dat.
    (tmp_path / "out" / "ml-1m").mkdir(parents=True)
    (tmp_path / "out" / "ml-1m" / "movies.dat").write_text("same")
    (tmp_path / "out" / "ml-1m" / "mine.txt").write_text("keep")
    make_zip(tmp_path / "a.zip", {"ml-1m/movies.dat": "same", "ml-1m/ratings.dat": "r"})
    safe_extract(tmp_path / "a.zip", tmp_path / "out")
    folder = tmp_path / "out" / "ml-1m"
    assert (folder / "movies.dat").read_text() == "same"
    assert (folder / "ratings.dat").read_text() == "r"
    assert (folder / "mine.txt").read_text() == "keep"
    assert not list((tmp_path / "out").glob(".extract-*"))


def test_an_existing_file_with_other_content_is_never_overwritten(tmp_path):
    folder = tmp_path / "out" / "ml-1m"
    folder.mkdir(parents=True)
    (folder / "movies.dat").write_text("edited by me")
    make_zip(tmp_path / "a.zip", {"ml-1m/movies.dat": "new", "ml-1m/ratings.dat": "r"})
    with pytest.raises(UnsafeArchiveError, match=f"would replace {folder / 'movies.dat'}.*nothing was changed"):
        safe_extract(tmp_path / "a.zip", tmp_path / "out")
    assert (folder / "movies.dat").read_text() == "edited by me"
    assert not (folder / "ratings.dat").exists()  # nothing moved at all
    assert not list((tmp_path / "out").glob(".extract-*"))


@pytest.mark.parametrize("existing", ["folder", "file"])
def test_a_member_named_like_an_existing_path_of_the_other_kind_is_refused(tmp_path, existing):
    out = tmp_path / "out"
    if existing == "folder":  # the archive has a file 'mydata' where the user has a folder
        (out / "mydata").mkdir(parents=True)
        (out / "mydata" / "precious.txt").write_text("keep")
        make_zip(tmp_path / "a.zip", {"mydata": "a file", "other.txt": "o"})
    else:  # the archive has a folder 'mydata/' where the user has a file
        out.mkdir()
        (out / "mydata").write_text("keep")
        make_zip(tmp_path / "a.zip", {"mydata/inner.txt": "i", "other.txt": "o"})
    with pytest.raises(UnsafeArchiveError, match="would replace"):
        safe_extract(tmp_path / "a.zip", out)
    kept = out / "mydata" / "precious.txt" if existing == "folder" else out / "mydata"
    assert kept.read_text() == "keep"
    assert not (out / "other.txt").exists()


def test_an_archive_without_known_checksum_is_hashed_logged_and_pinned(server, tmp_path, caplog):
    www, url = server
    digest = make_zip(www / "custom.zip", {"custom/a.txt": "a"})
    root = tmp_path / "data"
    with caplog.at_level("WARNING", logger="data_modules.download"):
        fetch(f"{url}/custom.zip", root, None, progress=False)
    assert f"its sha256 is {digest}" in caplog.text and "data.checksum=[sha256," in caplog.text
    assert (root / "custom.zip.sha256").read_text().split() == [digest, "custom.zip"]
    assert (root / "custom" / "a.txt").read_text() == "a"
    # Later runs check against the recorded digest: a changed download is refused.
    (root / "custom.zip").unlink()
    make_zip(www / "custom.zip", {"custom/a.txt": "changed on the server"})
    with pytest.raises(ChecksumError, match=f"expected {digest}"):
        fetch(f"{url}/custom.zip", root, None, progress=False)
    assert (root / "custom" / "a.txt").read_text() == "a"


def test_movielens_custom_url_logs_the_computed_sha256(server, tmp_path, caplog):
    www, url = server
    digest = ml100k_zip(www / "mirror-100k.zip")
    root = tmp_path / "data"
    with caplog.at_level("WARNING", logger="data_modules.download"):
        data = movielens("ml-100k", root=root, url=f"{url}/mirror-100k.zip", progress=False)
    assert data.num_users == 3
    assert f"its sha256 is {digest}" in caplog.text
    assert (root / "mirror-100k.zip.sha256").read_text().split()[0] == digest

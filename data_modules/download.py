"""Download and safely extract dataset archives.

Archives are checked against a known checksum before anything is unpacked, and
extraction refuses members that would land outside the target folder (absolute paths,
``..`` components, links pointing outside). Members are unpacked into a temporary
folder first and moved into place only when the whole archive extracted cleanly, so an
interrupted run never leaves a half-extracted dataset that looks complete.
"""
from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import shutil
import stat
import tempfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

# (algorithm, hex digest) published by the data provider, keyed by archive file name.
# GroupLens publishes MD5 sums for the MovieLens archives.
CHECKSUMS: dict[str, tuple[str, str]] = {
    "ml-100k.zip": ("md5", "0e33842e24a9c977be4e0107933c0723"),
    "ml-1m.zip": ("md5", "c4d9eecfca2ab87c1945afe126590906"),
    "ml-20m.zip": ("md5", "cd245b17a1ae2cc31bb14903e1204af3"),
}
ALGORITHMS = ("md5", "sha1", "sha256")
CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A downloaded file does not match its published checksum."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the extraction folder."""


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}; use one of {ALGORITHMS}")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    checksum: tuple[str, str] | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Stream ``url`` to ``dest`` with a progress bar and verify ``(algorithm, hexdigest)``.

    The data goes to ``dest + '.part'`` and is renamed only after the checksum matched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    algorithm = checksum[0] if checksum else "sha256"
    digest = hashlib.new(algorithm)
    log.info("downloading %s -> %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise OSError(
            f"download of {url} failed ({exc}); check the network or the url/base_url setting, "
            f"or put the file at {dest} yourself"
        ) from exc
    if checksum is not None and digest.hexdigest() != checksum[1].lower():
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"{url}: {algorithm} is {digest.hexdigest()}, expected {checksum[1]}; the download "
            "is corrupt or the server sent another file (check url/base_url), then retry"
        )
    os.replace(part, dest)
    return dest


def verify(path: str | os.PathLike, checksum: tuple[str, str] | None) -> bool:
    """True when ``path`` matches ``checksum`` (always True without a checksum)."""
    return checksum is None or file_digest(path, checksum[0]) == checksum[1].lower()


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> list[Path]:
    """Extract a zip into ``target``; refuse unsafe members. Returns the top-level paths made."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as handle:
        members = handle.infolist()
        for member in members:
            _check_member(member, handle, archive)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
        try:
            for member in members:
                _extract_member(handle, member, tmp)
            moved = []
            for child in sorted(tmp.iterdir()):
                moved.append(_move_into(child, target / child.name))
            return moved
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def fetch(
    url: str,
    root: str | os.PathLike,
    checksum: tuple[str, str] | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Download ``url`` into ``root`` (unless a verified copy is there) and extract it."""
    root = Path(root)
    archive = root / posixpath.basename(url.rstrip("/"))
    if archive.exists() and not verify(archive, checksum):
        log.warning("%s does not match its checksum; downloading it again", archive)
        archive.unlink()
    if not archive.exists():
        download(url, archive, checksum, progress=progress)
    safe_extract(archive, root)
    return archive


# --- members -------------------------------------------------------------------------


def _is_link(member: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(member.external_attr >> 16)


def _member_parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", "."))


def _check_member(member: zipfile.ZipInfo, handle: zipfile.ZipFile, archive) -> None:
    name = member.filename
    unix = name.replace("\\", "/")
    if unix.startswith("/") or (len(unix) > 1 and unix[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing")
    if ".." in _member_parts(name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing")
    if _is_link(member):
        link = handle.read(member).decode("utf-8", "replace")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(unix), link))
        if link.startswith("/") or joined == ".." or joined.startswith("../"):
            raise UnsafeArchiveError(
                f"{archive}: member {name!r} is a link to {link!r} outside the target; refusing"
            )


def _extract_member(handle: zipfile.ZipFile, member: zipfile.ZipInfo, root: Path) -> None:
    parts = _member_parts(member.filename)
    if not parts:
        return
    path = root.joinpath(*parts)
    if member.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_link(member):
        os.symlink(handle.read(member).decode("utf-8"), path)
        return
    with handle.open(member) as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)


def _move_into(src: Path, dst: Path) -> Path:
    """Move ``src`` to ``dst``; folders merge file by file, archive files win."""
    if src.is_dir() and not src.is_symlink() and dst.is_dir():
        for child in src.iterdir():
            _move_into(child, dst / child.name)
        return dst
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    os.replace(src, dst)
    return dst

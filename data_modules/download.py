"""Download and safely extract dataset archives.

Archives are checked against a known checksum before anything is unpacked. An archive
whose name is not in :data:`CHECKSUMS` and that comes without one (``data.checksum``)
is hashed while it downloads: the sha256 is logged and kept next to it
(``<archive>.sha256``), and a later run checks the file against it.

Extraction refuses members that would land outside the target folder (absolute paths,
``..`` components) and every link (dataset archives hold none, and chained links can
point anywhere). Members are unpacked into a temporary folder inside the target and
moved into place only when the whole archive extracted cleanly, so an interrupted run
never leaves a half-extracted dataset that looks complete. Existing files are never
overwritten or deleted: a member whose path is taken by a different file or folder
stops the extraction before anything is moved.
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
    """An archive member would be written outside the extraction folder, is a link, or
    would replace an existing file."""


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
    """Extract a zip into ``target``; refuse unsafe members and clashes with existing
    files. Returns the top-level paths made or merged into."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as handle:
        members = handle.infolist()
        for member in members:
            _check_member(member, archive)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
        try:
            for member in members:
                _extract_member(handle, member, tmp)
            children = sorted(tmp.iterdir())
            clashes = [str(c) for child in children for c in _clashes(child, target / child.name)]
            if clashes:
                raise UnsafeArchiveError(
                    f"{archive}: extracting would replace {', '.join(clashes[:5])}, which already "
                    f"exist{'' if len(clashes) > 1 else 's'} with other content; nothing was changed: "
                    "move the existing files away and retry"
                )
            return [_move_into(child, target / child.name) for child in children]
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def fetch(
    url: str,
    root: str | os.PathLike,
    checksum: tuple[str, str] | None = None,
    *,
    progress: bool = True,
) -> Path:
    """Download ``url`` into ``root`` (unless a verified copy is there) and extract it.

    Without ``checksum`` the sha256 recorded by an earlier download (``<archive>.sha256``)
    is checked; a first download records it and logs it.
    """
    root = Path(root)
    archive = root / posixpath.basename(url.rstrip("/"))
    checksum = checksum or recorded_checksum(archive)
    if archive.exists() and not verify(archive, checksum):
        log.warning("%s does not match its checksum; downloading it again", archive)
        archive.unlink()
    if not archive.exists():
        download(url, archive, checksum, progress=progress)
    if checksum is None:
        _record_checksum(url, archive)
    safe_extract(archive, root)
    return archive


def recorded_checksum(archive: Path) -> tuple[str, str] | None:
    """``("sha256", digest)`` from ``<archive>.sha256``, if a first download wrote one."""
    sidecar = archive.with_name(archive.name + ".sha256")
    if not sidecar.is_file():
        return None
    words = sidecar.read_text().split()
    return ("sha256", words[0].lower()) if words else None


def _record_checksum(url: str, archive: Path) -> None:
    """Keep the sha256 of an archive that came without a known checksum, and say it."""
    digest = file_digest(archive, "sha256")
    archive.with_name(archive.name + ".sha256").write_text(f"{digest}  {archive.name}\n")
    log.warning(
        "%s has no known checksum, so it could not be verified; its sha256 is %s (kept in %s.sha256 "
        "and checked from now on). Pin it with data.checksum=[sha256,%s]", url, digest, archive.name, digest,
    )


# --- members -------------------------------------------------------------------------


def _is_link(member: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(member.external_attr >> 16)


def _member_parts(name: str) -> tuple[str, ...]:
    return tuple(p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", "."))


def _check_member(member: zipfile.ZipInfo, archive) -> None:
    name = member.filename
    unix = name.replace("\\", "/")
    if unix.startswith("/") or (len(unix) > 1 and unix[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing")
    if ".." in _member_parts(name):
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'; refusing")
    if _is_link(member):  # a chain of links, each harmless alone, can reach anywhere
        raise UnsafeArchiveError(f"{archive}: member {name!r} is a symbolic link; dataset archives hold none, refusing")


def _extract_member(handle: zipfile.ZipFile, member: zipfile.ZipInfo, root: Path) -> None:
    parts = _member_parts(member.filename)
    if not parts:
        return
    path = root.joinpath(*parts)
    if member.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise UnsafeArchiveError(f"member {member.filename!r} clashes with another member of the archive; refusing") from None
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with handle.open(member) as src, open(path, "xb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
    except (FileExistsError, NotADirectoryError):
        raise UnsafeArchiveError(f"member {member.filename!r} clashes with another member of the archive; refusing") from None


def _clashes(src: Path, dst: Path) -> list[Path]:
    """Existing paths that moving ``src`` to ``dst`` would replace: a file with other
    content, or a file where a folder is (either way round)."""
    if not os.path.lexists(dst):
        return []
    if src.is_dir():
        if not dst.is_dir():
            return [dst]
        return [c for child in sorted(src.iterdir()) for c in _clashes(child, dst / child.name)]
    if dst.is_dir() or not dst.is_file() or not _same_content(src, dst):
        return [dst]
    return []


def _move_into(src: Path, dst: Path) -> Path:
    """Move ``src`` to ``dst`` (checked by :func:`_clashes`): folders merge, a file
    already there with the same content stays as it is."""
    if not os.path.lexists(dst):
        os.replace(src, dst)
    elif src.is_dir():
        for child in sorted(src.iterdir()):
            _move_into(child, dst / child.name)
    return dst


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    return file_digest(a, "sha256") == file_digest(b, "sha256")

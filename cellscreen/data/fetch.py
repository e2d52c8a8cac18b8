"""Download an official dataset archive, verify it, and unpack it atomically.

The archive is downloaded into ``<data root>/.downloads/`` (an interrupted
download resumes from where it stopped), checked against the size and sha256
recorded in the dataset profile, unpacked into a hidden temporary folder and
only then moved into place with one rename.  Whatever goes wrong, the data
root never holds a half-unpacked dataset, and a file that fails its checksum
is deleted.

Some archives have no published checksum: GitHub makes a repository's
archive on request (the smear sets).  Such a download is taken whole as it
comes, never resumed (two requests may not give the same bytes), and its
measured sha256 is printed so that it can be recorded or passed as
``--sha256`` to hold a later download to the same file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from http.client import HTTPException
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from cellscreen.data.sources import DatasetProfile, Download
from cellscreen.errors import UserError

__all__ = ["fetch_dataset"]

_BLOCK = 1 << 20


def fetch_dataset(
    profile: DatasetProfile,
    data_root: str | Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Make ``profile``'s dataset present under ``data_root`` and return its folder (for a set of cells, the
    one holding the class folders).

    ``url`` points at a mirror; ``sha256`` and ``size`` override the recorded
    checksum (for a mirror holding a different release).  Where neither is
    known the download is not checked; its sha256 is printed.
    """
    if profile.download is None:
        raise UserError(f"dataset {profile.name!r} has no official download cellscreen knows of")
    source = Download(
        url=url or profile.download.url,
        sha256=(sha256 or profile.download.sha256 or "").lower() or None,
        size=profile.download.size if size is None else size,
        archive_root=profile.download.archive_root,
        unpack_as=profile.download.unpack_as,
    )
    data_root = Path(data_root)
    target = data_root / profile.folder
    final = target / source.folder_name
    if final.is_dir() and not force:
        return final
    try:
        target.mkdir(parents=True, exist_ok=True)
        downloads = data_root / ".downloads"
        downloads.mkdir(exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write into {data_root} ({exc.strerror}); choose another folder with --data") from None
    archive = downloads / f"{profile.name}.zip"
    partial = archive.with_suffix(".zip.part")
    if not archive.is_file():
        _download(source, partial, progress=progress, timeout=timeout)
        digest = _verify(partial, source)
        if source.sha256 is None:
            print(f"{profile.name}: no checksum is recorded for {source.url}; the download measured sha256 {digest} "
                  f"({partial.stat().st_size:,} bytes): pass --sha256 {digest} to hold a later download to it")
        os.replace(partial, archive)
    _unpack(archive, target, source, replace=force)
    archive.unlink()
    return final


def _download(source: Download, partial: Path, *, progress: bool, timeout: float) -> None:
    have = partial.stat().st_size if partial.is_file() else 0
    if have and (source.size is None or source.sha256 is None or have > source.size):
        partial.unlink()  # an unchecked archive is never glued together from two requests
        have = 0
    request = urllib.request.Request(source.url, headers={"User-Agent": "cellscreen"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have == source.size:  # already complete
            return
        raise UserError(f"download of {source.url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"cannot reach {source.url}: {reason}; check the network or pass --url for a mirror") from None
    with response:
        if have and response.status != 206:  # the server ignored Range: start again
            have = 0
        mode = "ab" if have else "wb"
        expected = source.size if source.size is not None else (int(response.headers.get("Content-Length") or 0)
                                                                 or None)
        bar = tqdm(total=expected, initial=have, unit="B", unit_scale=True, desc="downloading", disable=not progress)
        again = "resume" if source.size is not None and source.sha256 is not None else "start again"
        try:
            with partial.open(mode) as out:
                while block := response.read(_BLOCK):
                    out.write(block)
                    bar.update(len(block))
                    if source.size is not None and out.tell() > source.size:
                        break
        except (HTTPException, OSError) as exc:
            got = partial.stat().st_size
            raise UserError(
                f"download interrupted after {got:,}{'' if expected is None else f' of {expected:,}'} bytes "
                f"({exc.__class__.__name__}); run the same command again to {again}"
            ) from None
        finally:
            bar.close()
        got = partial.stat().st_size
        if source.size is None and expected is not None and got < expected:  # the connection closed early
            raise UserError(f"download stopped after {got:,} of {expected:,} bytes; run the same command again to "
                            f"{again}")


def _verify(partial: Path, source: Download) -> str:
    """The download's sha256, once its size and hash are what the profile records (where it records them)."""
    got = partial.stat().st_size
    if source.size is not None and got < source.size:
        raise UserError(
            f"download stopped after {got:,} of {source.size:,} bytes; run the same command again to resume"
        )
    if source.size is not None and got > source.size:
        partial.unlink()
        raise UserError(f"download is {got:,} bytes, expected {source.size:,}: not the expected file; deleted it")
    digest = hashlib.sha256()
    with partial.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    if source.sha256 is not None and digest.hexdigest() != source.sha256:
        partial.unlink()
        raise UserError(
            f"checksum mismatch for {source.url}: sha256 {digest.hexdigest()}, expected {source.sha256}; "
            "the file was deleted"
        )
    return digest.hexdigest()


def _unpack(archive: Path, target: Path, source: Download, *, replace: bool) -> None:
    archive_root = source.archive_root
    staging = Path(tempfile.mkdtemp(prefix=".unpacking-", dir=target))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    parts = PurePosixPath(name).parts
                    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                        archive.unlink()
                        raise UserError(f"{archive.name} contains an unsafe path {name!r}; refusing to unpack it")
                if not archive_root:  # the archive's one top folder, e.g. GitHub's "<repository>-<branch>"
                    tops = {PurePosixPath(name).parts[0] for name in zf.namelist() if PurePosixPath(name).parts}
                    if len(tops) != 1:
                        archive.unlink()
                        raise UserError(f"{archive.name} holds {len(tops)} top folders, not one; cannot tell which "
                                        "is the dataset")
                    archive_root = tops.pop()
                zf.extractall(staging)
        except zipfile.BadZipFile as exc:
            archive.unlink()
            raise UserError(f"{archive.name} is not a valid zip archive ({exc}); deleted it, try again") from None
        unpacked = staging / archive_root
        if not unpacked.is_dir():
            raise UserError(f"{archive.name} does not contain the expected folder {archive_root!r}")
        final = target / source.folder_name
        if final.exists():
            if not replace:
                raise UserError(f"{final} already exists; pass --force to replace it")
            old = Path(tempfile.mkdtemp(prefix=".replaced-", dir=target))
            os.replace(final, old / source.folder_name)
            os.replace(unpacked, final)
            shutil.rmtree(old)
        else:
            os.replace(unpacked, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

"""Deterministic .tar.gz archives (rule tarballs for suricata-update), and a bounded reader for checking them."""

from __future__ import annotations

import gzip
import io
import tarfile

MAX_UNPACKED = 256 * 1024 * 1024  # a rules tarball that unpacks to more is refused, not read into memory


def targz(files: dict[str, bytes], mtime: int) -> bytes:
    """A gzip'd ustar archive of regular files: members sorted, owner root, mode 0644, every time stamp
    `mtime` and the gzip header's time 0, so identical files give identical bytes."""
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            archive.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as zipped:
        zipped.write(tar_buffer.getvalue())
    return out.getvalue()


def read_targz(data: bytes) -> dict[str, bytes]:
    """The regular files of a .tar.gz by member name; ValueError (with the reason) when it is not one,
    or when it would unpack to more than MAX_UNPACKED bytes."""
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                total += member.size
                if total > MAX_UNPACKED:
                    raise ValueError(f"unpacks to more than {MAX_UNPACKED // (1024 * 1024)} MiB")
                handle = archive.extractfile(member)
                files[member.name] = handle.read() if handle else b""
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"not a readable .tar.gz: {exc}") from None
    return files

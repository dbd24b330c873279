"""Writing files so that a failure never leaves half a file, a stray temporary or a folder nobody
asked for; and checking an output path before any work is done, so that a bad ``-o`` is refused in
a sentence instead of a traceback after a long simulation.

Only the standard library is used: the command line imports this module before NumPy.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError

#: Bytes a temporary's name adds to the target's: the dots before and after the name, mkstemp's
#: 8 random characters and the ".tmp" suffix.
_TMP_EXTRA = 1 + 1 + 8 + 4
#: Used where the file system cannot be asked (``os.pathconf`` missing or failing).
_DEFAULT_NAME_MAX = 255


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):
        return _DEFAULT_NAME_MAX


def _tmp_prefix(path: Path) -> str:
    """``.NAME.``, the name cut so that the temporary's whole name fits the folder's limit: a
    target whose own name is legal must never fail on its temporary's. (A cut inside a multi-byte
    character is harmless: ``os.fsdecode`` keeps the bytes as they are.)"""
    raw = os.fsencode(path.name)[:max(_name_max(path.parent) - _TMP_EXTRA, 1)]
    return "." + os.fsdecode(raw) + "."


def make_dirs(folder: str | Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the folders this call created, deepest
    first, so that a caller that fails afterwards can remove exactly those (:func:`remove_dirs`)
    and nothing that existed before."""
    folder = Path(folder)
    missing: list[Path] = []
    p = folder
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created: list[Path] = []
    try:
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                if not os.path.isdir(d):
                    raise
                continue  # made by someone else meanwhile: not ours to remove
            created.append(d)
    except BaseException:
        remove_dirs(created[::-1])
        raise
    return created[::-1]


def remove_dirs(created: Iterable[Path]) -> None:
    """Remove folders :func:`make_dirs` created (deepest first), each only if it is still empty."""
    for d in created:
        try:
            d.rmdir()
        except OSError:
            return  # not empty (someone put something there) or already gone: leave the rest


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file in the target folder, then rename it to ``path``.

    The rename is atomic, so a reader (or a run killed half-way) sees the old file or the new one,
    never a part. The temporary is flushed to disk before the rename, so a crash just after cannot
    leave an empty file under the new name. On any failure the temporary is removed, and so are the
    parent folders this call created. A folder at ``path`` is refused (``IsADirectoryError``)
    before anything is written, and so is a name longer than the folder allows (``OSError``
    ENAMETOOLONG). The file gets the permissions a plain ``open()`` would give it
    (0666 less the umask).
    """
    path = Path(path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if len(os.fsencode(path.name)) > _name_max(path.parent if os.path.isdir(path.parent) else Path(".")):
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
    created = make_dirs(path.parent)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent)
        os.close(fd)
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError:  # a file system without fsync (some network mounts): the rename still holds
            pass
        finally:
            os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
        remove_dirs(created)
        raise
    return path


# ----------------------------------------------------------------------------- output checks

def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB pieces (a trace can be gigabytes)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` name the same file: the same inode where both exist (hard links,
    symbolic links, ``./x`` vs ``x``), otherwise the same resolved path."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError, ValueError):
        return os.path.abspath(a) == os.path.abspath(b)


def _first_file_ancestor(path: Path) -> Path | None:
    for parent in Path(os.path.abspath(path)).parents:
        try:
            if not stat.S_ISDIR(os.stat(parent).st_mode):
                return parent
        except OSError:
            continue
    return None


def _longest_component(path: Path) -> tuple[str, int]:
    parts = [p for p in Path(path).parts if p not in ("/", "\\")] or [str(path)]
    longest = max(parts, key=lambda p: len(os.fsencode(p)))
    return longest, len(os.fsencode(longest))


def _is_our_temporary(name: str | bytes | None, target: Path) -> bool:
    if not name:
        return False
    base = os.path.basename(os.fsdecode(name))
    return base.endswith(".tmp") and base.startswith(_tmp_prefix(target))


def output_error(path: str | Path, exc: OSError) -> UsageError:
    """A one-paragraph :class:`UsageError` for an ``OSError`` met while preparing or writing the
    output ``path``: what went wrong in words (name too long, permission denied, read-only, a
    parent that is a file, no space) and what to do."""
    path = Path(path)
    code = exc.errno
    detail = exc.strerror or str(exc)
    if exc.filename and os.fsdecode(exc.filename) != str(path) and not _is_our_temporary(exc.filename, path):
        detail += f" (at {os.fsdecode(exc.filename)})"
    where = str(path)
    if code == errno.ENAMETOOLONG:
        name, size = _longest_component(path)
        folder = path.parent if os.path.isdir(path.parent) else Path(".")
        if size > _name_max(folder):
            shown = name if len(name) <= 40 else name[:20] + "..." + name[-12:]
            expected = f"names of at most {_name_max(folder)} bytes each"
            found = f"'{shown}', {size} bytes ({detail})"
        else:  # every name fits: the whole path is too long
            expected = "a shorter path"
            found = f"a path of {len(os.fsencode(os.path.abspath(path)))} bytes ({detail})"
        return UsageError("the output's name is too long for the file system", file=where,
                          expected=expected, found=found, suggestion="choose a shorter output name")
    if code in (errno.EACCES, errno.EPERM):
        return UsageError("permission denied writing the output", file=where,
                          expected="a folder you may write to", found=detail,
                          suggestion="choose another output folder, or change its permissions")
    if code == errno.EROFS:
        return UsageError("the output is on a read-only file system", file=where,
                          expected="a writable folder", found=detail, suggestion="write to another folder")
    if code == errno.ENOTDIR:
        parent = _first_file_ancestor(path)
        return UsageError("a parent of the output is a file, not a folder", file=where,
                          expected="folders all the way to the output",
                          found=f"{parent} is a file" if parent else detail,
                          suggestion="choose another output path")
    if code == errno.EISDIR:
        return UsageError("the output is a folder", file=where, expected="a file name", found="a folder",
                          suggestion="name a file inside it, e.g. " + str(path / "out"))
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return UsageError("no space left for the output", file=where, expected="free space on the device",
                          found=detail, suggestion="free some space, or write to another device")
    return UsageError("cannot write the output", file=where, found=detail,
                      suggestion="check the path, its folders and their permissions")


def _names_output(name: str | bytes | None, target: Path) -> bool:
    """Whether an OSError's file name is ``target`` or the temporary atomic_write made for it."""
    if not name:
        return False
    text = os.fsdecode(name)
    return same_file(text, target) or (os.path.dirname(os.path.abspath(text)) == os.path.abspath(target.parent)
                                       and _is_our_temporary(text, target))


@contextmanager
def writing(*paths: str | Path) -> Iterator[None]:
    """Turn any ``OSError`` raised inside the block into :func:`output_error` for the output it
    concerns: the one of ``paths`` the error names (itself or its temporary), else the first."""
    try:
        yield
    except OSError as e:
        targets = [Path(p) for p in paths]
        hit = next((t for t in targets if _names_output(e.filename, t) or _names_output(e.filename2, t)),
                   targets[0])
        raise output_error(hit, e) from e


def _writable_folder(path: Path) -> None:
    """Refuse ``path`` when its nearest existing folder cannot take new files (a read-only file
    system or permissions): checked up front so that a long run is not wasted."""
    folder = Path(os.path.abspath(path)).parent
    while not os.path.lexists(folder) and folder.parent != folder:
        folder = folder.parent
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # no statvfs (Windows): the write itself will tell
        read_only = False
    if read_only:
        raise output_error(path, OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder)))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise output_error(path, PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder)))


def check_output(path: str | Path, *, folder: bool = False, inputs: Iterable[str | Path | None] = ()) -> bool:
    """Check, before anything is computed or written, that ``path`` can be an output: a file
    (or, with ``folder``, a folder) whose name the file system accepts, whose parents are folders,
    whose nearest existing folder is writable, that is not a folder (a file: whatever overwriting
    allows) or a file (a folder), and that is none of ``inputs`` (an output over its own input
    would destroy it). Returns whether ``path`` exists; raises :class:`UsageError` otherwise.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise output_error(path, e) from e
    if st is not None and not folder and stat.S_ISDIR(st.st_mode):
        raise UsageError("the output is a folder, not a file", file=str(path), expected="a file name",
                         found="an existing folder", suggestion="name a file, e.g. " + str(path / "out"))
    if st is not None and folder and not stat.S_ISDIR(st.st_mode):
        raise UsageError("output is not a directory", file=str(path), expected="a directory",
                         found="a file", suggestion="choose a folder name for -o")
    for source in inputs:
        if source is not None and same_file(path, source):
            raise UsageError("the output is one of the command's inputs", file=str(path),
                             expected="an output different from every input",
                             found=f"the same file as the input {source}",
                             suggestion="choose another output name; writing it would destroy the input")
    # a new file or folder is made in the nearest existing folder; an existing folder takes files
    _writable_folder(path / "_" if st is not None and folder else path)
    return st is not None

"""Bounded, pickle-free reading of ``.npz`` archives (a ZIP of ``.npy`` arrays).

``numpy.load`` trusts its container: it inflates a member before anyone can look at its shape,
allocates whatever element count a header claims, and lets the header parser's own exceptions
escape. This reader checks, in this order, and reads an array's data last:

1. the file: its end record declares a central directory of at most ``MAX_DIRECTORY_BYTES``;
2. every member, from the central directory: a unique name ending in ``.npy``, not encrypted,
   stored or deflated (no other method), sizes the file can hold (a stored member's data inside
   the file and before the central directory, no two members overlapping, a deflated member
   claiming at most ``DEFLATE_MAX_RATIO`` times its compressed size, the most deflate can give),
   and all members together within the memory budget (:func:`memory_budget`);
3. an array's ``.npy`` header only, read from the member's stream (magic, format 1.0 or 2.0, at
   most ``MAX_HEADER_BYTES``): a plain numeric dtype (an object array would be a pickle), a
   shape of non-negative integers, and the member's declared size equal to header + data;
4. the dtype and shape the caller expects, against that header, before any data is read;
5. exactly the header's byte count, into one preallocated array: a stored member with a single
   ``readinto`` from the file, a deflated one through ``zlib`` in ``CHUNK_BYTES`` pieces; a
   stream that gives more or fewer bytes, or a wrong CRC-32, is a damaged member.

Every failure is a :class:`~snnsim.errors.WorkloadError` naming the file and the array (the
member's name without ``.npy``).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import tokenize
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from ..errors import WorkloadError

MAX_HEADER_BYTES = 10_000  # numpy's own default cap on a .npy header
MAX_MEMBERS = 16_384
MAX_DIRECTORY_BYTES = 16 << 20  # bounds the ZipInfo objects zipfile builds from the directory
# RFC 1951: a 258-byte match costs at least 2 bits (1-bit length and distance codes), so no
# deflate stream inflates more than 1032x; the slack covers tiny streams' block headers
DEFLATE_MAX_RATIO = 1032
DEFLATE_SLACK_BYTES = 1024
CHUNK_BYTES = 16 << 20
MAX_JSON_DEPTH = 64  # objects and lists; walking deeper JSON would exhaust Python's stack later
MAX_INT_DIGITS = 100  # no count or size needs more; Python refuses past 4300 with a bare ValueError
ENCRYPTED, PATCHED, STRONG_ENCRYPTION, UTF8_NAME, MASKED_DIRECTORY = 0x1, 0x20, 0x40, 0x800, 0x2000
METHODS = {0: "stored", 8: "deflated", 12: "bzip2", 14: "lzma", 93: "zstandard", 99: "AES-encrypted"}
NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature, versions, flags, method, time, date, CRC, sizes, lengths
_END_RECORD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_END_RECORD = struct.Struct("<4sQ2H2L4Q")
_MAPPING_LINE = re.compile(r"[A-Za-z_][\w.\- ]*:(\s|$)")
# what reading a member (zipfile, zlib, the npy header parser) raises on bad bytes
_STREAM_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, struct.error, NotImplementedError,
                  RuntimeError)
_DAMAGED = _STREAM_ERRORS + (ValueError, OverflowError)
# and what numpy's header parser (ast.literal_eval, tokenize, np.dtype) raises on bad text
_BAD_HEADER = _DAMAGED + (SyntaxError, TypeError, KeyError, IndexError, RecursionError, MemoryError,
                          tokenize.TokenError)


def memory_budget() -> int:
    """Bytes the arrays of one archive may take once read: this machine's physical memory, so a
    file that cannot fit is refused with a message instead of a MemoryError or the OOM killer."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 1 << 40


def sniff(path: str | Path, source: str | None = None) -> str:
    """What a file looks like from its first 4 KiB: ``zip``, ``npy``, ``hdf5`` (a NIR graph),
    ``yaml`` (text that reads as a mapping, or a .yaml/.yml name), ``text``, ``empty`` or
    ``unknown``. Only regular files are opened (a FIFO would block)."""
    src = source or str(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as e:
        raise WorkloadError("cannot read the file", file=src, expected="a readable file",
                            found=os_error_text(e)) from None
    if not head:
        return "empty"
    if head.startswith(ZIP_MAGICS):
        return "zip"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if b"\0" in head:
        return "unknown"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # not just a character cut at the end of the 4 KiB
            return "unknown"
        text = head[:e.start].decode("utf-8")
    lines = [ln.strip() for ln in text.splitlines()]
    first = next((ln for ln in lines if ln and not ln.startswith(("#", "---", "%"))), "")
    if Path(path).suffix.lower() in (".yaml", ".yml") or _MAPPING_LINE.match(first):
        return "yaml"
    return "text"


def os_error_text(e: OSError) -> str:
    """An OSError as one short line (e.g. 'File name too long (ENAMETOOLONG)')."""
    import errno

    name = errno.errorcode.get(e.errno or 0, "")
    text = e.strerror or type(e).__name__
    return f"{text} ({name})" if name else text


@dataclass(frozen=True)
class NpyHeader:
    """What a ``.npy`` header says; ``offset`` is where the data starts in the member."""

    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def describe_dtype(dt: np.dtype) -> str:
    """``float32 ('<f4')``: the name alone hides the byte order ('>f4' is also 'float32')."""
    return f"{dt.name} ('{dt.str}')"


class NpzArchive:
    """An ``.npz`` opened for checked reading (see the module docstring); use as a context
    manager. ``names`` lists the arrays (member names without ``.npy``) in archive order."""

    def __init__(self, path: str | Path, source: str | None = None, *, max_bytes: int | None = None) -> None:
        self.source = source or str(path)
        try:
            self._fh = open(path, "rb")
        except OSError as e:
            raise WorkloadError("cannot read the file", file=self.source, expected="a readable .npz archive",
                                found=os_error_text(e)) from None
        try:
            self._size = os.fstat(self._fh.fileno()).st_size
            self._check_directory_size()
            try:
                self._zip = zipfile.ZipFile(self._fh)
            except (_DAMAGED + (zipfile.LargeZipFile, MemoryError)) as e:
                raise WorkloadError("not an .npz archive (truncated, damaged or another format)",
                                    file=self.source, expected="a ZIP of .npy arrays",
                                    found=str(e) or type(e).__name__) from None
            self._infos = self._check_members(memory_budget() if max_bytes is None else max_bytes)
        except BaseException:
            self._fh.close()
            raise
        self.names = list(self._infos)
        self._headers: dict[str, NpyHeader] = {}

    def __enter__(self) -> NpzArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._zip.close()
        self._fh.close()

    def _error(self, message: str, key: str | None, expected: str, found: str,
               suggestion: str | None = None) -> WorkloadError:
        return WorkloadError(message, file=self.source, key=key, expected=expected, found=found,
                             suggestion=suggestion)

    def _check_directory_size(self) -> None:
        """Refuse a central directory larger than ``MAX_DIRECTORY_BYTES`` before zipfile parses
        it (zipfile itself reports a missing or damaged end record)."""
        tail_len = min(self._size, _END_RECORD.size + 65535)
        self._fh.seek(self._size - tail_len)
        tail = self._fh.read(tail_len)
        i = tail.rfind(b"PK\x05\x06")
        if i < 0 or len(tail) - i < _END_RECORD.size:
            return
        _sig, _disk, _cd_disk, _n_disk, n_entries, size_cd, offset_cd, _comment = _END_RECORD.unpack_from(tail, i)
        if n_entries == 0xFFFF or 0xFFFFFFFF in (size_cd, offset_cd):
            j = i - _ZIP64_LOCATOR.size
            if j >= 0 and tail[j:j + 4] == b"PK\x06\x07":
                record_at = _ZIP64_LOCATOR.unpack_from(tail, j)[2]
                self._fh.seek(min(record_at, self._size))
                raw = self._fh.read(_ZIP64_END_RECORD.size)
                if len(raw) == _ZIP64_END_RECORD.size and raw[:4] == b"PK\x06\x06":
                    fields = _ZIP64_END_RECORD.unpack(raw)
                    n_entries, size_cd = fields[7], fields[8]
        if size_cd > MAX_DIRECTORY_BYTES or n_entries > MAX_MEMBERS:
            raise self._error("the archive's directory is too large", None,
                              f"at most {MAX_MEMBERS} members, {MAX_DIRECTORY_BYTES} bytes of directory",
                              f"{n_entries} members, {size_cd} bytes of directory")

    def _check_members(self, budget: int) -> dict[str, zipfile.ZipInfo]:
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise self._error("too many members", None, f"at most {MAX_MEMBERS}", str(len(infos)))
        end_of_data = min(getattr(self._zip, "start_dir", self._size), self._size)
        out: dict[str, zipfile.ZipInfo] = {}
        spans = []
        for info in infos:
            name = info.filename
            key = name[:-4] if name.endswith(".npy") else name
            if key in out:
                raise self._error("duplicate member name in the archive", key, "each array stored once",
                                  f"'{name}' twice")
            if not name.endswith(".npy") or not key:
                raise self._error("member is not an .npy array", key, "members named <array>.npy",
                                  f"'{name}'")
            if info.flag_bits & (ENCRYPTED | STRONG_ENCRYPTION | MASKED_DIRECTORY):
                raise self._error("member is encrypted", key, "an unencrypted member",
                                  f"flag bits {info.flag_bits:#06x}")
            if info.flag_bits & PATCHED or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                method = METHODS.get(info.compress_type, "unknown")
                raise self._error("unsupported compression method", key, "stored (0) or deflated (8)",
                                  f"method {info.compress_type} ({method})"
                                  + (", compressed patched data" if info.flag_bits & PATCHED else ""))
            if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
                raise self._error("member is damaged: stored, but its two sizes differ", key,
                                  f"compressed size = size = {info.file_size}", f"{info.compress_size}")
            if (info.compress_type == zipfile.ZIP_DEFLATED
                    and info.file_size > DEFLATE_MAX_RATIO * info.compress_size + DEFLATE_SLACK_BYTES):
                raise self._error("member declares more bytes than deflate can give (a zip bomb?)", key,
                                  f"at most {DEFLATE_MAX_RATIO}x its {info.compress_size} compressed bytes",
                                  f"{info.file_size} bytes")
            try:
                raw_name = len(info.orig_filename.encode("utf-8" if info.flag_bits & UTF8_NAME else "cp437"))
            except UnicodeEncodeError:
                raw_name = 0
            start, end = info.header_offset, info.header_offset + _LOCAL_HEADER.size + raw_name + info.compress_size
            if end > end_of_data:
                raise self._error("member's data lies past the end of the archive (truncated?)", key,
                                  f"data ending by byte {end_of_data}", f"ending at byte {end}")
            spans.append((start, end, key))
            out[key] = info
        spans.sort()
        for (_s0, e0, k0), (s1, _e1, k1) in zip(spans, spans[1:], strict=False):
            if s1 < e0:
                raise self._error("members overlap (a crafted archive)", k1, f"'{k1}' after the end of '{k0}'",
                                  f"starting at byte {s1}, before byte {e0}")
        total = sum(info.file_size for info in infos)
        if total > budget:
            raise self._error("the arrays would not fit in memory", None, f"at most {budget} bytes",
                              f"{total} bytes uncompressed")
        return out

    def declared_size(self, name: str) -> int:
        """Uncompressed bytes (header + data) the directory declares for an array."""
        return self._info(name).file_size

    def _info(self, name: str) -> zipfile.ZipInfo:
        if name not in self._infos:
            raise self._error("array missing", name, "an array of that name", "no such array")
        return self._infos[name]

    def header(self, name: str) -> NpyHeader:
        """The checked ``.npy`` header of an array (its data is not read)."""
        hit = self._headers.get(name)
        if hit is not None:
            return hit
        info = self._info(name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy warns about (and copes with) Python 2 headers
                with self._zip.open(info) as fp:
                    try:
                        version = npy_format.read_magic(fp)
                    except ValueError:
                        raise self._error("member is not an .npy array", name, "the NumPy magic "
                                          "b'\\x93NUMPY'", "other bytes") from None
                    if version == (1, 0):
                        shape, fortran, dtype = npy_format.read_array_header_1_0(fp, MAX_HEADER_BYTES)
                    elif version == (2, 0):
                        shape, fortran, dtype = npy_format.read_array_header_2_0(fp, MAX_HEADER_BYTES)
                    else:
                        raise self._error("unsupported .npy format version", name, "1.0 or 2.0",
                                          f"{version[0]}.{version[1]}")
                    offset = fp.tell()
        except WorkloadError:
            raise
        except _STREAM_ERRORS as e:  # the ZIP stream, before or while the header is read
            raise self._error("member is damaged", name, "a readable member", _short(e)) from None
        except _BAD_HEADER as e:
            raise self._error("member is damaged: its .npy header cannot be read", name,
                              "a NumPy header {'descr', 'fortran_order', 'shape'}",
                              _short(e)) from None
        if dtype.hasobject:
            raise self._error("array holds Python objects: reading it would unpickle them, which "
                              "snnsim never does (object arrays are refused)", name, "a plain numeric array",
                              f"dtype {dtype.str!r} (pickle)")
        if dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in NUMERIC_KINDS:
            raise self._error("array is not of a plain numeric dtype", name, "bool, integer or float",
                              f"dtype {dtype.descr if dtype.fields is not None else dtype.str!r}")
        if not all(type(s) is int and s >= 0 for s in shape):
            raise self._error("member is damaged: its .npy header has an invalid shape", name,
                              "non-negative integers", repr(shape))
        h = NpyHeader(dtype, tuple(shape), bool(fortran), offset)
        if info.file_size != h.offset + h.nbytes:
            raise self._error("member's size disagrees with its .npy header (damaged or crafted)", name,
                              f"{h.offset} header + {h.nbytes} data bytes for {describe_dtype(dtype)} "
                              f"{list(h.shape)}", f"{info.file_size} bytes")
        self._headers[name] = h
        return h

    def expect(self, name: str, dtype: Any = None, shape: tuple[int | None, ...] | None = None) -> NpyHeader:
        """The header of ``name``, which must have this dtype (any byte order) and shape (``None``
        entries match any length); raises WorkloadError naming both. Reads no data."""
        h = self.header(name)
        want = None if dtype is None else np.dtype(dtype)
        dtype_ok = want is None or h.dtype.newbyteorder("=") == want.newbyteorder("=")
        shape_ok = shape is None or (len(shape) == len(h.shape)
                                     and all(w is None or w == s for w, s in zip(shape, h.shape, strict=True)))
        if not (dtype_ok and shape_ok):
            exp_shape = "" if shape is None else " " + str(["any" if s is None else s for s in shape])
            raise self._error("array has the wrong shape or dtype", name,
                              f"{describe_dtype(want) if want is not None else 'any dtype'}{exp_shape}",
                              f"{describe_dtype(h.dtype)} {list(h.shape)}")
        return h

    def read(self, name: str, dtype: Any = None, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
        """The array ``name``, checked like :meth:`expect` before its data is read; C-ordered,
        native byte order (a big-endian or Fortran-ordered member is converted), writable."""
        h = self.expect(name, dtype, shape)
        info = self._info(name)
        try:
            arr = np.empty(h.shape[::-1] if h.fortran_order else h.shape, dtype=h.dtype)
        except (MemoryError, ValueError) as e:
            raise self._error("not enough memory for the array", name, f"{h.nbytes} bytes free",
                              _short(e)) from None
        if h.nbytes:
            flat = arr.reshape(-1).view(np.uint8)
            try:
                start = self._data_start(info, name)
                if info.compress_type == zipfile.ZIP_STORED:
                    self._read_stored(info, name, start, h, flat)
                else:
                    self._inflate(info, name, start, h, flat)
            except WorkloadError:
                raise
            except _DAMAGED as e:
                raise self._error("member is damaged", name, "a readable array", _short(e)) from None
        if h.fortran_order:
            arr = np.ascontiguousarray(arr.T)
        if not h.dtype.isnative:
            arr = arr.astype(h.dtype.newbyteorder("="))
        return arr

    def read_json(self, name: str, max_bytes: int) -> Any:
        """A 1-D uint8 member of at most ``max_bytes`` bytes, as UTF-8 JSON (see :func:`parse_json`)."""
        size = self.declared_size(name)
        if size > max_bytes:
            raise self._error("member too large", name, f"at most {max_bytes} bytes", f"{size} bytes")
        return parse_json(self.read(name, np.uint8, (None,)).tobytes(), self.source, name)

    def _data_start(self, info: zipfile.ZipInfo, name: str) -> int:
        """Where a member's bytes start in the file, from its local header."""
        self._fh.seek(info.header_offset)
        raw = self._fh.read(_LOCAL_HEADER.size)
        if len(raw) != _LOCAL_HEADER.size:
            raise self._error("member is damaged: truncated local header", name, "30 bytes", f"{len(raw)}")
        sig, _ver, flags, method, _t, _d, _crc, _cs, _us, n_name, n_extra = _LOCAL_HEADER.unpack(raw)
        if sig != b"PK\x03\x04" or method != info.compress_type or flags & (ENCRYPTED | STRONG_ENCRYPTION):
            raise self._error("member is damaged: its local header disagrees with the directory", name,
                              f"an unencrypted {METHODS[info.compress_type]} member",
                              f"signature {sig!r}, method {method}, flags {flags:#06x}")
        start = info.header_offset + _LOCAL_HEADER.size + n_name + n_extra
        if start + info.compress_size > self._size:
            raise self._error("member's data lies past the end of the file (truncated?)", name,
                              f"{info.compress_size} bytes from byte {start}", f"a file of {self._size} bytes")
        return start

    def _read_stored(self, info: zipfile.ZipInfo, name: str, start: int, h: NpyHeader, flat: np.ndarray) -> None:
        self._fh.seek(start)
        head = self._fh.read(h.offset)
        got = self._fh.readinto(memoryview(flat))
        if len(head) != h.offset or got != h.nbytes:
            raise self._error("member is damaged: its data ends early", name, f"{h.nbytes} bytes",
                              f"{got or 0} bytes")
        if zlib.crc32(flat, zlib.crc32(head)) != info.CRC:
            raise self._error("member is damaged: CRC-32 mismatch", name, f"{info.CRC:#010x}", "other bytes")

    def _inflate(self, info: zipfile.ZipInfo, name: str, start: int, h: NpyHeader, flat: np.ndarray) -> None:
        """Inflate exactly header + data bytes; the header part goes only into the CRC."""
        self._fh.seek(start)
        d = zlib.decompressobj(-zlib.MAX_WBITS)
        out = memoryview(flat)
        pos, skip, crc, left_in, buf = 0, h.offset, 0, info.compress_size, b""
        while not d.eof:
            if not buf:
                if left_in <= 0:
                    break
                buf = self._fh.read(min(CHUNK_BYTES, left_in))
                if not buf:
                    break
                left_in -= len(buf)
            room = skip + h.nbytes - pos
            piece = d.decompress(buf, min(room, CHUNK_BYTES) if room else 1)  # 1: is there more?
            buf = d.unconsumed_tail
            if not piece:
                continue
            crc = zlib.crc32(piece, crc)
            if skip:
                cut = min(skip, len(piece))
                skip -= cut
                piece = piece[cut:]
            if len(piece) > h.nbytes - pos:
                raise self._error("member is damaged: it inflates to more bytes than its header says", name,
                                  f"{h.offset + h.nbytes} bytes", "more")
            out[pos:pos + len(piece)] = piece
            pos += len(piece)
        if pos != h.nbytes or skip:
            raise self._error("member is damaged: it inflates to fewer bytes than its header says", name,
                              f"{h.nbytes} data bytes", f"{pos}")
        if not d.eof:
            raise self._error("member is damaged: its deflate stream does not end", name,
                              "the end of the stream after the data", "no end")
        if crc != info.CRC:
            raise self._error("member is damaged: CRC-32 mismatch", name, f"{info.CRC:#010x}", "other bytes")


def _short(e: BaseException) -> str:
    """An exception as one line of at most 200 characters."""
    text = f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__
    return text[:200]


class _LongInteger(ValueError):
    def __init__(self, digits: int) -> None:
        super().__init__(f"an integer of {digits} digits")
        self.digits = digits


def _bounded_int(text: str) -> int:
    """json's ``parse_int``: refuses a long integer before Python converts it (quadratic cost)."""
    if len(text) > MAX_INT_DIGITS:
        raise _LongInteger(len(text.lstrip("-")))
    return int(text)


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON (1 for a flat object or list, 0 for a scalar), walked without
    recursion; stops counting once past ``MAX_JSON_DEPTH``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((c, depth + 1) for c in children)
    return deepest


def parse_json(data: bytes, source: str, key: str) -> Any:
    """UTF-8 JSON bytes -> Python values, bounded: integers of at most ``MAX_INT_DIGITS`` digits,
    at most ``MAX_JSON_DEPTH`` levels (also when deeper than the parser's recursion limit)."""
    deep = WorkloadError("JSON nested too deeply", file=source, key=key,
                         expected=f"at most {MAX_JSON_DEPTH} levels of objects and lists",
                         found=f"more than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(data.decode("utf-8"), parse_int=_bounded_int)
    except _LongInteger as e:
        raise WorkloadError("JSON holds an integer too long for any count or size", file=source, key=key,
                            expected=f"integers of at most {MAX_INT_DIGITS} digits",
                            found=f"an integer of {e.digits} digits") from None
    except RecursionError:
        raise deep from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise WorkloadError(f"{key} is not valid JSON", file=source, key=key, expected="UTF-8 JSON",
                            found=str(e)[:200]) from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise deep
    return value

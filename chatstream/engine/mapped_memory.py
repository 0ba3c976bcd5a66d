"""Giving back the resident pages of a tensor that lives in a memory-mapped file.

transformers loads safetensors checkpoints by mapping the file and handing out tensors that point
into the mapping. The mapping stays as long as any of those tensors lives (the embedding, the norms),
and every page a pass over the weights touched stays resident in it, counted in the process's RSS.
When the engine replaces a weight by another form (prepacked, quantized) and drops the original,
`release_file_pages` tells the kernel those pages are no longer needed (`madvise(MADV_DONTNEED)`).

This is safe only for file-backed mappings: a later read of such a page maps the file's content
again, so the data does not change for anyone who still holds the tensor. Anonymous memory
(a tensor allocated normally) is never touched: it is freed when its last reference goes. Pages
shared with a neighbouring tensor (at either end of the range) are kept. Linux only; elsewhere
this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys

import torch

MADV_DONTNEED = 4


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


def _file_mapping_of(address: int) -> tuple[int, int] | None:
    """(start, end) of the file-backed mapping holding `address`, or None (anonymous, or not found)."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if start <= address < end:
                    path = fields[5].strip() if len(fields) > 5 else ""
                    # A real file path; "[heap]", "[stack]", "" (anonymous) and deleted files do not qualify.
                    if path.startswith("/") and not path.endswith("(deleted)") and fields[4] != "0":
                        return start, end
                    return None
    except OSError:
        return None
    return None


def release_file_pages(tensor: torch.Tensor) -> int:
    """Drop the resident pages wholly inside `tensor`'s bytes if they belong to a file mapping.

    Returns the number of bytes released (0 when the tensor is not in a file mapping)."""
    libc = _libc()
    if libc is None or tensor.device.type != "cpu" or tensor.numel() == 0 or not tensor.is_contiguous():
        return 0
    begin = tensor.data_ptr()
    mapping = _file_mapping_of(begin)
    if mapping is None:
        return 0
    page = mmap.PAGESIZE
    end = min(begin + tensor.numel() * tensor.element_size(), mapping[1])
    first = -(-begin // page) * page
    last = end // page * page
    if last <= first:
        return 0
    if libc.madvise(ctypes.c_void_p(first), last - first, MADV_DONTNEED) != 0:
        return 0
    return last - first


def trim_heap() -> None:
    """Return the C heap's free pages to the kernel (glibc's `malloc_trim`).

    Preparing the weights frees many temporaries of a few MB (concatenated siblings, contiguous
    copies); glibc keeps such freed memory in its heap, resident, unless asked to give it back."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is not None:
        trim(0)

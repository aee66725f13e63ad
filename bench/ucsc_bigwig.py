"""Write a bigWig laid out as UCSC's ``bedGraphToBigWig`` lays it out (the bench's ``ucsc`` shape).

pyBigWig (libBigWig) fills each data block up to 32 kB uncompressed (about 2,730 bedGraph intervals),
while UCSC's tools, which chrombpnet's and BPNet's pipelines run to make their observed tracks, put
``itemsPerSlot`` = 1024 intervals in a block and ``blockSize`` = 256 entries in a node of the R tree.
The block size decides what a per-window reader (pyBigWig's ``values``) decompresses for each window:
about half as much in this layout, so a naive pipeline reads these files about twice as fast.

Written from the bigWig specification (Kent et al. 2010, and UCSC's ``bbiFile.h``/``bwgCreate.c``):
header, chromosome B+ tree (one leaf node), zlib-compressed bedGraph sections (type 1, never across a
chromosome), and a two-level R tree. No zoom levels and no total summary (both optional; readers of
base-resolution values never use them).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

BIGWIG_MAGIC = 0x888FFC26
CHROM_TREE_MAGIC = 0x78CA8C91
R_TREE_MAGIC = 0x2468ACE0
ITEMS_PER_SLOT = 1024  # bedGraphToBigWig's default: intervals per data block
BLOCK_SIZE = 256  # bedGraphToBigWig's default: entries per node of the chromosome tree and the R tree
HEADER_BYTES = 64
ITEM = np.dtype([("start", "<u4"), ("end", "<u4"), ("value", "<f4")])


def sections(sizes: dict, intervals: dict, items_per_slot: int = ITEMS_PER_SLOT):
    """``(chrom id, items)`` for each data block: consecutive runs of at most ``items_per_slot`` intervals of
    one chromosome, chromosomes in the order of ``sizes``. ``intervals[chrom]``: ``(starts, ends, values)``."""
    for chrom_id, chrom in enumerate(sizes):
        if chrom not in intervals:
            continue
        starts, ends, values = intervals[chrom]
        items = np.empty(len(starts), dtype=ITEM)
        items["start"], items["end"], items["value"] = starts, ends, values
        for a in range(0, len(items), items_per_slot):
            yield chrom_id, items[a:a + items_per_slot]


def chrom_tree(sizes: dict) -> bytes:
    """The chromosome B+ tree: its header and one leaf node holding every chromosome (id, size)."""
    names = [name.encode() for name in sizes]
    key_size = max(len(name) for name in names)
    tree = struct.pack("<IIIIQQ", CHROM_TREE_MAGIC, max(BLOCK_SIZE, len(names)), key_size, 8, len(names), 0)
    tree += struct.pack("<BBH", 1, 0, len(names))
    for chrom_id, (name, size) in enumerate(zip(names, sizes.values())):
        tree += name.ljust(key_size, b"\0") + struct.pack("<II", chrom_id, int(size))
    return tree


def r_tree(leaves: list, index_offset: int) -> bytes:
    """The R tree over the data blocks ``leaves`` ((chrom, start, chrom, end, offset, size) each): its header, a
    root node of up to ``BLOCK_SIZE`` children and leaf nodes of up to ``BLOCK_SIZE`` blocks each."""
    groups = [leaves[a:a + BLOCK_SIZE] for a in range(0, len(leaves), BLOCK_SIZE)]
    if len(groups) > BLOCK_SIZE:
        raise ValueError(f"{len(leaves)} data blocks need a deeper R tree than this writer makes")
    header_bytes, node_header = 48, 4
    root_bytes = node_header + 24 * len(groups)
    first_leaf = index_offset + header_bytes + root_bytes
    leaf_offsets = np.cumsum([0] + [node_header + 32 * len(g) for g in groups])[:-1] + first_leaf
    out = struct.pack("<IIQIIIIQII", R_TREE_MAGIC, BLOCK_SIZE, len(leaves), leaves[0][0], leaves[0][1],
                      leaves[-1][2], leaves[-1][3], index_offset, ITEMS_PER_SLOT, 0)
    out += struct.pack("<BBH", 0, 0, len(groups))
    for group, offset in zip(groups, leaf_offsets):
        out += struct.pack("<IIIIQ", group[0][0], group[0][1], group[-1][2], group[-1][3], int(offset))
    for group in groups:
        out += struct.pack("<BBH", 1, 0, len(group))
        out += b"".join(struct.pack("<IIIIQQ", *leaf) for leaf in group)
    return out


def write_ucsc_bigwig(path, sizes: dict, intervals: dict, items_per_slot: int = ITEMS_PER_SLOT) -> None:
    """Write the sorted, non-overlapping bedGraph ``intervals`` (``{chrom: (starts, ends, values)}``) on the
    chromosomes ``sizes`` (``{name: length}``, in their id order) as a bigWig in UCSC's layout."""
    tree = chrom_tree(sizes)
    data_offset = HEADER_BYTES + len(tree)
    blocks, leaves, biggest = [], [], 0
    position = data_offset + 8  # after the count of data blocks
    for chrom_id, items in sections(sizes, intervals, items_per_slot):
        first, last = int(items["start"][0]), int(items["end"][-1])
        raw = struct.pack("<IIIIIBBH", chrom_id, first, last, 0, 0, 1, 0, len(items)) + items.tobytes()
        block = zlib.compress(raw)
        leaves.append((chrom_id, first, chrom_id, last, position, len(block)))
        blocks.append(block)
        position += len(block)
        biggest = max(biggest, len(raw))
    if not leaves:
        raise ValueError("no interval to write")
    index_offset = position
    header = struct.pack("<IHHQQQHHQQIQ", BIGWIG_MAGIC, 4, 0, HEADER_BYTES, data_offset, index_offset, 0, 0, 0, 0,
                         biggest, 0)
    with open(Path(path), "wb") as out:
        out.write(header + tree + struct.pack("<Q", len(blocks)))
        for block in blocks:
            out.write(block)
        out.write(r_tree(leaves, index_offset))

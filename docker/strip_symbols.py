"""Drop the static symbol table (``.symtab`` and its ``.strtab``) from shared libraries, as ``strip`` would.

    python strip_symbols.py FILE...

The dynamic linker and torch use only the dynamic symbols (``.dynsym``), which stay; the static table only
names functions for debuggers (89 MB of torch 2.13's 434 MB ``libtorch_cpu.so``). Used in the image's build
stage, where no binutils are installed. A file is left as it was unless it is a 64-bit little-endian ELF
whose static tables lie at its end, just before the section-name table and the section headers.
"""

import os
import struct
import sys

HEADER = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
SECTION = struct.Struct("<IIQQQQIIQQ")  # Elf64_Shdr: name, type, flags, addr, offset, size, link, info, align, entsize
SHT_SYMTAB, SHT_NOBITS = 2, 8
SHF_INFO_LINK = 0x40  # sh_info holds a section index


def stripped(data: bytes):
    """``data`` without its static symbol table, or None when it has none or it is not laid out as expected."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # ELFCLASS64, little-endian
        return None
    fields = list(HEADER.unpack_from(data))
    shoff, shentsize, shnum, shstrndx = fields[6], fields[11], fields[12], fields[13]
    if shentsize != SECTION.size or shoff + shnum * shentsize != len(data):
        return None
    sections = [list(SECTION.unpack_from(data, shoff + i * shentsize)) for i in range(shnum)]
    symtab = next((i for i, s in enumerate(sections) if s[1] == SHT_SYMTAB), None)
    if symtab is None:
        return None
    strtab = sections[symtab][6]
    dropped = {symtab, strtab}
    if shstrndx in dropped or not 0 < strtab < shnum:
        return None
    cut = min(sections[i][4] for i in dropped)
    names = sections[shstrndx]
    # nothing but the dropped tables and the section names may lie at or after the cut
    for i, s in enumerate(sections):
        if i not in dropped and i != shstrndx and s[1] != SHT_NOBITS and s[5] and s[4] + s[5] > cut:
            return None
    if names[4] < cut:
        return None
    kept = [i for i in range(shnum) if i not in dropped]
    new_index = {old: new for new, old in enumerate(kept)}
    body = bytearray(data[:cut])
    name_bytes = data[names[4]:names[4] + names[5]]
    names_offset = len(body)
    body += name_bytes
    body += b"\0" * (-len(body) % 8)
    table_offset = len(body)
    for i in kept:
        s = list(sections[i])
        if i == shstrndx:
            s[4] = names_offset
        s[6] = new_index.get(s[6], 0)  # sh_link: a section index
        if s[2] & SHF_INFO_LINK:
            s[7] = new_index.get(s[7], 0)
        body += SECTION.pack(*s)
    fields[6], fields[12], fields[13] = table_offset, len(kept), new_index[shstrndx]
    body[:HEADER.size] = HEADER.pack(*fields)
    return bytes(body)


def main(paths) -> int:
    saved = 0
    for path in paths:
        with open(path, "rb") as handle:
            data = handle.read()
        smaller = stripped(data)
        if smaller is None:
            continue
        temporary = f"{path}.strip-tmp"
        with open(temporary, "wb") as handle:
            handle.write(smaller)
        os.chmod(temporary, os.stat(path).st_mode)
        os.replace(temporary, path)
        saved += len(data) - len(smaller)
    print(f"strip_symbols.py: {saved / 1e6:.0f} MB of static symbol tables dropped from {len(paths)} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

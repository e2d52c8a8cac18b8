"""Writers for every awkward file a lab's folder may hold.

``write_all(folder)`` returns ``{name: (path, expected)}`` where ``expected``
is ``None`` for files that must load (after conversion) or a phrase the skip
reason must contain.

``write_hostile(root)`` adds a corpus of hostile entries (odd names, links,
pipes, permissions, nesting, extreme sizes, ...) to a dataset folder and
returns a ``Corpus``: each entry with what every command must do with it.
``write_broken_layouts(base)`` writes dataset folders whose class folders are
wrong (a file, or empty).
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import unicodedata
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _rgb(h: int = 16, w: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG claiming huge dimensions: a decompression bomb's calling card."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def write_all(folder: Path, seed: int = 0) -> dict[str, tuple[Path, str | None]]:
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(_rgb(64, 64, seed))
    rgba = np.dstack([_rgb(16, 16, seed + 1), np.full((16, 16), 255, np.uint8)])
    rgba[0, 0, 3] = 0  # one transparent pixel
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    files = {
        "zero_bytes.png": (b"", "empty file"),
        "truncated.png": (_encoded(rgb, "PNG")[:300], "truncated"),
        "truncated.jpg": (_encoded(rgb, "JPEG", quality=95)[:700], "truncated"),
        "text_not_image.png": (b"this is a lab note, not a picture\n" * 4, "not an image"),
        "bomb.png": (png_header_only(100_000, 100_000), "too large"),
        "gray.png": (_encoded(Image.fromarray(_rgb(seed=seed + 2)[:, :, 0], "L"), "PNG"), None),
        "rgba.png": (_encoded(Image.fromarray(rgba, "RGBA"), "PNG"), None),
        "palette.png": (_encoded(Image.fromarray(_rgb(seed=seed + 3)).convert("P"), "PNG"), None),
        "gray16.png": (_encoded(Image.fromarray(np.full((8, 8), 65535, np.uint16)), "PNG"), None),
        "cmyk.jpg": (_encoded(Image.fromarray(_rgb(seed=seed + 4)).convert("CMYK"), "JPEG"), None),
        "exif_rotated.jpg": (_encoded(Image.fromarray(_rgb(10, 20, seed + 5)), "JPEG", exif=exif), None),
        "cell.bmp": (_encoded(Image.fromarray(_rgb(seed=seed + 6)), "BMP"), None),
        "cell.tiff": (_encoded(Image.fromarray(_rgb(seed=seed + 7)), "TIFF"), None),
        ".DS_Store": (b"\x00\x00\x00\x01Bud1", "hidden or system file"),
        "Thumbs.db": (b"\xd0\xcf\x11\xe0", "hidden or system file"),
    }
    written = {}
    for name, (data, expected) in files.items():
        path = folder / name
        path.write_bytes(data)
        written[name] = (path, expected)
    return written


# --- a hostile corpus: every awkward thing a lab's folder (or a user) can hold ---------------------------

NOT_POSTABLE = "not postable"  # no bytes to upload: a folder, a FIFO, a dangling symlink ...


@dataclasses.dataclass(frozen=True)
class Hostile:
    """One file (or file-system entry) of the hostile corpus and what every command must do with it.

    ``dataset`` is the expectation of the commands that read a dataset folder (data info, split, train,
    evaluate), ``predict`` that of ``cellscreen predict`` walking the same folder, ``content`` that of the
    service given the file's bytes: ``None`` means it must be used, a string is a phrase the skip reason
    must contain.  ``root_reads`` marks the kinds root can read anyway (file permissions do not stop it).
    """

    kind: str
    path: Path
    dataset: str | None
    predict: str | None
    content: str | None
    root_reads: bool = False

    def rel(self, root: Path) -> str:
        """The path as cellscreen reports it: relative to ``root``, undecodable bytes written ``\\xe9``."""
        relative = self.path.relative_to(root).as_posix()
        return relative.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclasses.dataclass
class Corpus:
    root: Path
    entries: list[Hostile]
    kinds: list[str]  # every kind tried, including those that leave no file (an empty folder)

    def by_kind(self, kind: str) -> list[Hostile]:
        return [e for e in self.entries if e.kind == kind]


def _animated_gif(seed: int) -> bytes:
    frames = [Image.fromarray(_rgb(8, 8, seed + k)) for k in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def jpeg_header_only(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims ``width`` x ``height`` pixels."""
    data = bytearray(_encoded(Image.fromarray(_rgb(16, 16, 9)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_bad_crc() -> bytes:
    """A PNG whose image data fails its CRC: a flipped bit somewhere on the way."""
    data = bytearray(_encoded(Image.fromarray(_rgb(16, 16, 10)), "PNG"))
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    data[at + 4 + length] ^= 0xFF  # first byte of the IDAT checksum
    return bytes(data)


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="20" height="20"><circle cx="10" ' \
      b'cy="10" r="8" fill="#c9a"/></svg>\n'
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def write_hostile(root: Path, seed: int = 100, skip_kinds: frozenset[str] | set[str] = frozenset()) -> Corpus:
    """Add the hostile corpus to ``root``, a malaria-nih style folder holding ``Parasitized/`` and
    ``Uninfected/`` with at least one good cell each (file names start with the slide id, ``C<n>``).

    Returns the corpus: one ``Hostile`` per entry written (the good cells already there are not listed)
    and the list of kinds tried.  ``skip_kinds`` leaves some kinds out.
    """
    root = Path(root)
    pos, neg = root / "Parasitized", root / "Uninfected"
    good = sorted(p for p in pos.iterdir() if p.is_file() and p.suffix == ".png")[0]
    entries: list[Hostile] = []
    kinds: list[str] = []

    def wanted(kind: str) -> bool:
        if kind in skip_kinds:
            return False
        kinds.append(kind)
        return True

    def add(kind, path, dataset, predict="same", content="same", root_reads=False):
        predict = dataset if predict == "same" else predict
        content = dataset if content == "same" else content
        entries.append(Hostile(kind, Path(path), dataset, predict, content, root_reads))

    def file(kind, path, data, dataset, predict="same", content="same"):
        if wanted(kind):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
            add(kind, path, dataset, predict, content)

    def png(h=16, w=16, k=0):
        return _encoded(Image.fromarray(_rgb(h, w, seed + k)), "PNG")

    def jpg(h=16, w=16, k=0):
        return _encoded(Image.fromarray(_rgb(h, w, seed + k)), "JPEG", quality=90)

    # 1-15: the awkward formats of write_all, with slide ids so the loadable ones are used
    odd = root / "_odd"
    for name, (path, expected) in write_all(odd, seed=seed).items():
        kind = f"write_all:{name}"
        if not wanted(kind):
            path.unlink()
            continue
        target = neg / (name if name in (".DS_Store", "Thumbs.db") else f"C2_{name}")
        path.rename(target)
        # the service sees bytes, not names: a .DS_Store or Thumbs.db is simply not an image there
        content = "not an image" if expected == "hidden or system file" else expected
        add(kind, target, expected, content=content)
    odd.rmdir()

    # names and extensions: content decides the format, the name only whether a file is a candidate
    file("jpeg_named_png", pos / "C3_jpeg_inside.png", jpg(k=1), None)
    file("png_named_jpg", pos / "C3_png_inside.jpg", png(k=2), None)
    file("no_extension", pos / "C3_no_extension", png(k=3), "not an image file type (no extension)", content=None)
    file("uppercase_extension", pos / "C3_UPPER.PNG", png(k=4), None)
    file("jpeg_extension", neg / "C3_long_ext.JPEG", jpg(k=5), None)
    file("webp", neg / "C3_cell.webp", _encoded(Image.fromarray(_rgb(16, 16, seed + 6)), "WEBP"), None)
    file("long_name", pos / ("C3_" + "x" * 243 + ".png"), png(k=7), None)  # 250 bytes, near NAME_MAX
    nonascii = "C3_zelle_ß_细胞_🩸_é.png"
    file("non_ascii_nfc", pos / unicodedata.normalize("NFC", nonascii), png(k=8), None)
    file("non_ascii_nfd", pos / unicodedata.normalize("NFD", nonascii), png(k=9), None)  # another file on Linux
    file("spaces_newline_quotes", pos / "C3 cell, \"quoted\" 'too'\nsecond line;$(x).png", png(k=10), None)
    file("only_an_extension", neg / ".png", png(k=11), "hidden or system file", content=None)
    file("no_slide_id", pos / "cell_without_slide_id.png", png(k=12), "no slide id", predict=None, content=None)
    file("text_file", neg / "C3_notes.txt", b"stain batch 7\n", "not an image file type (.txt)",
         content="not an image")
    if wanted("invalid_utf8_name"):  # Latin-1 bytes from an old archive: not valid UTF-8
        path = Path(os.fsdecode(bytes(pos) + b"/C3_caf\xe9_cell.png"))
        path.write_bytes(png(k=13))
        add("invalid_utf8_name", path, "not valid UTF-8", content=None)

    # sizes and shapes
    file("one_pixel", pos / "C4_1x1.png", png(1, 1, 14), None)
    file("one_by_n", neg / "C4_1x3000.png", png(1, 3000, 15), None)
    file("n_by_one", neg / "C4_3000x1.jpg", jpg(3000, 1, 16), None)
    # padded to a square before resizing, this 100k-pixel strip would need 30 GB
    file("extreme_strip", neg / "C4_1x100000.png", png(1, 100_000, 25), None)
    file("zero_size_header", pos / "C4_zero_size.png",
         b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)) + _chunk(b"IEND", b""),
         "not an image")
    file("huge_jpeg_header", pos / "C4_huge_header.jpg", jpeg_header_only(65000, 65000), "too large")
    file("png_bad_crc", pos / "C4_bad_crc.png", png_bad_crc(), "damaged")
    file("animated_gif", neg / "C4_animated.gif", _animated_gif(seed + 17), None)
    file("svg", pos / "C4_vector.svg", SVG, "not an image file type (.svg)", content="not an image")
    file("svg_named_png", pos / "C4_vector_svg.png", SVG, "not an image")
    file("pdf", neg / "C4_scan.pdf", PDF, "not an image file type (.pdf)", content="not an image")
    file("zero_byte_jpg", neg / "C4_empty.jpg", b"", "empty file")
    if wanted("oversized_file"):  # sparse: costs no disk, but reading it would cost 600 MB of memory
        path = neg / "C4_oversized.tif"
        with path.open("wb") as handle:
            handle.truncate(600 * 2**20)
        add("oversized_file", path, "file too large", content=NOT_POSTABLE)

    # duplicates
    file("duplicate_in_class", pos / "C5_copy_of_a_cell.png", good.read_bytes(), None)
    file("duplicate_across_classes", neg / "C5_same_bytes_as_a_parasitized_cell.png", good.read_bytes(), None)

    # the file system: links, pipes, permissions, folders
    if wanted("symlink_to_good_file"):
        link = pos / "C5_link_to_cell.png"
        link.symlink_to(good.name)
        add("symlink_to_good_file", link, None)
    if wanted("dangling_symlink"):
        link = pos / "C5_dangling.png"
        link.symlink_to("no_such_cell.png")
        add("dangling_symlink", link, "broken symbolic link", content=NOT_POSTABLE)
    if wanted("symlink_loop"):  # a folder link to the folder holding it: walking it would never end
        link = pos / "C5_loop"
        link.symlink_to(".", target_is_directory=True)
        add("symlink_loop", link, "symbolic link to a folder", content=NOT_POSTABLE)
    if wanted("symlink_loop_at_top"):
        link = root / "loop"
        link.symlink_to(".", target_is_directory=True)
        add("symlink_loop_at_top", link, "symbolic link to a folder", predict="symbolic link to a folder",
            content=NOT_POSTABLE)
    if wanted("symlink_to_device"):  # an endless file: /dev/zero never ends
        link = pos / "C5_endless.png"
        link.symlink_to("/dev/zero")
        add("symlink_to_device", link, "not a regular file", content=NOT_POSTABLE)
    if wanted("named_pipe"):  # opening a FIFO blocks until someone writes to it
        fifo = neg / "C5_pipe.png"
        os.mkfifo(fifo)
        add("named_pipe", fifo, "not a regular file", content=NOT_POSTABLE)
    if wanted("unreadable_file"):
        locked = pos / "C5_locked.png"
        locked.write_bytes(png(k=18))
        locked.chmod(0)
        add("unreadable_file", locked, "permission denied", content=None, root_reads=True)
    if wanted("folder_named_like_an_image"):  # a folder called C6_folder.png, with a cell inside
        inside = pos / "C6_folder.png" / "C6_inside.png"
        inside.parent.mkdir()
        inside.write_bytes(png(k=19))
        add("folder_named_like_an_image", inside, None)
    if wanted("deeply_nested"):
        folder = pos.joinpath("C6_deep", *[f"level{n:02d}" for n in range(1, 41)])
        folder.mkdir(parents=True)
        (folder / "C6_bottom.png").write_bytes(png(k=20))
        add("deeply_nested", folder / "C6_bottom.png", None)
    if wanted("empty_folder"):
        (pos / "C6_empty_folder").mkdir()
    if wanted("hidden_folder_in_class"):
        hidden = pos / ".thumbnails" / "C6_thumb.png"
        hidden.parent.mkdir()
        hidden.write_bytes(png(k=21))
        add("hidden_folder_in_class", hidden, "hidden folder", content=None)
    if wanted("hidden_folder_at_top"):
        hidden = root / ".cache" / "C6_cached.png"
        hidden.parent.mkdir()
        hidden.write_bytes(png(k=22))
        add("hidden_folder_at_top", hidden, "hidden folder", content=None)
    file("file_at_top", root / "C6_stray_cell.png", png(k=23), "not inside a class folder", predict=None,
         content=None)
    file("unknown_class_folder", root / "Unsure" / "C6_unsure.png", png(k=24), "unknown class folder",
         predict=None, content=None)
    return Corpus(root=root, entries=entries, kinds=kinds)


def write_broken_layouts(base: Path, seed: int = 200) -> dict[str, tuple[Path, str]]:
    """Dataset folders whose class folders are wrong: ``{kind: (folder, phrase of the error or warning)}``."""
    layouts = {}
    for kind in ("class_folder_is_a_file", "empty_class_folder"):
        root = base / kind
        for n in range(4):
            (root / "Parasitized").mkdir(parents=True, exist_ok=True)
            (root / "Parasitized" / f"C{n}_cell.png").write_bytes(_encoded(Image.fromarray(_rgb(seed=seed + n)), "PNG"))
        if kind == "class_folder_is_a_file":
            (root / "Uninfected").write_bytes(_encoded(Image.fromarray(_rgb(seed=seed + 9)), "PNG"))
            layouts[kind] = (root, "is a file, not a folder")
        else:
            (root / "Uninfected").mkdir()
            layouts[kind] = (root, "'Uninfected' has no usable images")
    return layouts


# --- damaged checkpoints: what a model folder may hold after a bad copy, an edit by hand or an attack ------

def _copy_run(run: Path, folder: Path) -> Path:
    import shutil

    shutil.copytree(run, folder, ignore=shutil.ignore_patterns("checkpoints", "logs", "test", "*.png", "*.onnx",
                                                               "*.onnx.json"))
    return folder


def _edit_description(folder: Path, change) -> None:
    import json

    meta = json.loads((folder / "model.json").read_text())
    change(meta)
    (folder / "model.json").write_text(json.dumps(meta))


def _edit_weights(folder: Path, change) -> None:
    """Change the weights and write the checksum of the changed file into ``model.json``: damage that the
    checksum cannot see (a file saved by a buggy tool, or changed on purpose)."""
    import hashlib
    import json

    from safetensors.numpy import load_file, save_file

    weights = folder / "model.safetensors"
    state = load_file(str(weights))
    change(state)
    save_file(state, str(weights))
    meta = json.loads((folder / "model.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / "model.json").write_text(json.dumps(meta))


def _graph_description(folder: Path, fmt: str) -> dict:
    """What ``cellscreen export`` writes beside a graph of the checkpoint in ``folder``."""
    import hashlib
    import json

    from cellscreen.serve.graph import describe_meta

    meta = json.loads((folder / "model.json").read_text())
    return describe_meta(meta, fmt, hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest())


def _first_float(state: dict) -> str:
    return next(k for k, v in state.items() if v.dtype.kind == "f" and v.size > 1)


def _two_dimensional(state: dict) -> str:
    return next(k for k, v in state.items() if v.ndim == 2)


class _Evil:
    def __reduce__(self):  # what a malicious pickle does: call any function on load
        return (os.system, ("touch cellscreen-pwned",))


def write_damaged_checkpoints(run: Path, base: Path) -> dict[str, tuple[Path, str, str]]:
    """Copies of the checkpoint in ``run`` under ``base``, each damaged in one way:
    ``{kind: (what to give the command, the file the message must name, a phrase it must hold)}``."""
    import json
    import pickle

    base.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[Path, str, str]] = {}

    def described(kind, change, phrase):
        folder = _copy_run(run, base / kind)
        _edit_description(folder, change)
        cases[kind] = (folder, str(folder / "model.json"), phrase)

    described("temperature_zero", lambda m: m.update(temperature=0), "temperature")
    described("temperature_negative", lambda m: m.update(temperature=-1), "temperature")
    described("temperature_nan", lambda m: m.update(temperature=float("nan")), "temperature")
    described("temperature_text", lambda m: m.update(temperature="hot"), "temperature")
    described("border_crop_text", lambda m: m.update(border_crop="zz"), "border_crop")
    described("input_size_huge", lambda m: m["data_config"].update(input_size=1e9), "input_size")
    described("std_zero", lambda m: m["data_config"].update(std=[0, 0, 0]), "std")
    described("two_million_classes", lambda m: m.update(classes=[f"c{n}" for n in range(2_000_000)]), "classes")
    described("classes_not_a_list", lambda m: m.update(classes="Uninfected"), "classes")
    described("positive_class_unknown", lambda m: m.update(positive_class="Zebra"), "positive_class")
    described("ensemble_of_itself",
              lambda m: m.update(kind="ensemble", model="ensemble", members=["."]), "member")
    described("ensemble_outside", lambda m: m.update(kind="ensemble", model="ensemble", members=["../.."]),
              "member")

    folder = _copy_run(run, base / "json_array")
    (folder / "model.json").write_text("[1, 2, 3]\n")
    cases["json_array"] = (folder, str(folder / "model.json"), "JSON object")

    folder = _copy_run(run, base / "pickle_as_description")
    (folder / "model.json").write_bytes(pickle.dumps({"state_dict": _Evil()}))
    cases["pickle_as_description"] = (folder, str(folder / "model.json"), "pickle")
    pickled = base / "model.pt"  # a PyTorch pickle handed in as the model
    pickled.write_bytes(pickle.dumps({"state_dict": _Evil()}))
    cases["pickle_file"] = (pickled, str(pickled), "pickle")

    folder = _copy_run(run, base / "nan_weights")
    _edit_weights(folder, lambda s: s[_first_float(s)].__setitem__(..., np.nan))
    cases["nan_weights"] = (folder, str(folder / "model.safetensors"), "not finite")
    folder = _copy_run(run, base / "infinite_weights")
    _edit_weights(folder, lambda s: s[_first_float(s)].__setitem__((0,) * s[_first_float(s)].ndim, np.inf))
    cases["infinite_weights"] = (folder, str(folder / "model.safetensors"), "not finite")
    folder = _copy_run(run, base / "wrong_shapes")
    _edit_weights(folder, lambda s: s.__setitem__(_two_dimensional(s), np.zeros((3, 7), np.float32)))
    cases["wrong_shapes"] = (folder, str(folder / "model.safetensors"), "shape")
    folder = _copy_run(run, base / "weights_random_bytes")
    (folder / "model.safetensors").write_bytes(np.random.default_rng(1).bytes(4096))
    _edit_description(folder, lambda m: m.pop("weights_sha256"))
    cases["weights_random_bytes"] = (folder, str(folder / "model.safetensors"), "weights")

    for kind, name, fmt in (("onnx_random_bytes", "model.onnx", "onnx"),
                            ("int8_random_bytes", "model.int8.onnx", "onnx-int8")):
        folder = _copy_run(run, base / kind)
        (folder / name).write_bytes(np.random.default_rng(2).bytes(5000))
        (folder / f"{name}.json").write_text(json.dumps(_graph_description(folder, fmt)))
        cases[kind] = (folder, str(folder / name), "cannot be loaded")
    graph = base / "loose_graph.onnx"  # an .onnx file given as the model, beside a valid description
    graph.write_bytes(np.random.default_rng(3).bytes(5000))
    Path(f"{graph}.json").write_text(json.dumps(_graph_description(base / "onnx_random_bytes", "onnx")))
    cases["loose_graph_random_bytes"] = (graph, str(graph), "cannot be loaded")
    folder = _copy_run(run, base / "graph_description_garbage")
    graph = folder / "graph.onnx"
    graph.write_bytes(b"")
    Path(f"{graph}.json").write_bytes(np.random.default_rng(4).bytes(300))
    cases["graph_description_garbage"] = (graph, f"{graph}.json", "description")
    return cases

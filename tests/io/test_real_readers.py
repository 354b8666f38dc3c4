"""Our exports read by the tools users run: ultralytics, label-studio-sdk, datumaro (CVAT),
pycocotools. Each reader is imported strictly in CI (see tests/readers.py)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pytest
from PIL import Image
from readers import in_ultralytics, real_reader  # tests/readers.py (tests/ is on sys.path)

from samadapter.io.exports import (
    ExportOptions,
    image_export_paths,
    write_image_exports,
    write_run_exports,
)
from samadapter.io.polygons import mask_iou
from samadapter.io.yolo import JOIN_MIN_IOU, mask_rings, yolo_lines
from samadapter.structures import SegmentationResult

ALL = ("coco", "yolo-seg", "labelstudio", "cvat")
ODD_NAMES = ["cat\x01", "sofa\ufffe", 'a & <b> "q"', "naïve\u2028🐱", "unknown"]


def multipart(h: int = 120, w: int = 160, parts: int = 6, seed: int = 0) -> np.ndarray:
    """``[h, w]`` mask of ``parts`` small discs scattered over the image, one with a hole."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), dtype=np.uint8)
    for _ in range(parts):
        cy, cx, r = (
            int(rng.integers(10, h - 10)),
            int(rng.integers(10, w - 10)),
            int(rng.integers(3, 10)),
        )
        cv2.circle(m, (cx, cy), r, 1, -1)
    cv2.circle(m, (w // 2, h // 2), 14, 1, -1)
    cv2.circle(m, (w // 2, h // 2), 5, 0, -1)
    return m.astype(bool)


def odd_result(factory: Callable[..., SegmentationResult]) -> SegmentationResult:
    """The conftest result with class names XML / YAML cannot hold as they are."""
    result = factory(unknown=True)
    result.class_names = list(ODD_NAMES)
    result.synonyms = [[n] for n in ODD_NAMES[:-1]]
    return result


def run_exports(
    tmp_path: Path,
    results: list[SegmentationResult],
    refs: list[str],
    image_factory: Callable[[int, int], np.ndarray],
    options: ExportOptions | None = None,
) -> tuple[Path, Path]:
    """Write each result's exports as a run does; images under ``tmp_path/in/<ref>``."""
    out, root = tmp_path / "out", tmp_path / "in"
    rels, sources = [], []
    for result, ref in zip(results, refs, strict=True):
        source = root / ref
        source.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_factory(*result.image_size)).save(source)
        rel = PurePosixPath(ref)  # as a run names it: relative to the root, with extension
        write_image_exports(result, out, rel, ALL, ref)
        rels.append(rel)
        sources.append(source)
    write_run_exports(out, rels, ALL, results[0].class_names, sources=sources, options=options)
    return out, root


# ------------------------------------------------------------------------------- ultralytics


def test_ultralytics_loads_the_dataset_with_an_images_folder_in_the_input_tree(
    tmp_path: Path,
    result_factory: Callable[..., SegmentationResult],
    image_factory: Callable[[int, int], np.ndarray],
) -> None:
    """Issue 12.2: ``ds/images/train/p1.jpg`` -> every label found, none a background."""
    results = [odd_result(result_factory), odd_result(result_factory)]
    refs = ["ds/images/train/p1.jpg", "ds/images/val/p 2 #ü.png"]
    out, _ = run_exports(
        tmp_path, results, refs, image_factory, ExportOptions(yolo_copy_images=True)
    )
    got = in_ultralytics(
        """
        from ultralytics.data.dataset import YOLODataset
        from ultralytics.data.utils import check_det_dataset, img2label_paths
        data = check_det_dataset(ARGS["yaml"])  # parses the YAML, finds the images
        ds = YOLODataset(img_path=data["train"], imgsz=64, cache=False, augment=False,
                         data=data, task="segment")
        print(json.dumps({
            "names": {str(k): v for k, v in data["names"].items()}, "nc": data["nc"],
            "labels": [{"image": lb["im_file"], "cls": lb["cls"].ravel().tolist(),
                        "segments": len(lb["segments"])} for lb in ds.labels],
            "label_files": img2label_paths([lb["im_file"] for lb in ds.labels])}))
        """,
        tmp_path,
        yaml=str(out / "yolo" / "data.yaml"),
    )
    assert got["names"] == {str(i): n for i, n in enumerate(ODD_NAMES)}
    assert got["nc"] == len(ODD_NAMES)
    images = sorted(Path(lb["image"]).relative_to(out / "yolo").as_posix() for lb in got["labels"])
    assert images == ["images/ds/_images/train/p1.jpg", "images/ds/_images/val/p 2 #ü.png"]
    assert all(Path(p).is_file() for p in got["label_files"])
    lines = yolo_lines(results[0])
    for label in got["labels"]:
        assert label["segments"] == len(lines) > 0  # no image seen as a background
        assert label["cls"] == [int(line.split()[0]) for line in lines]
    sources = json.loads((out / "yolo" / "image_sources.json").read_text())
    assert sorted(sources) == images


def test_data_yaml_without_copies_says_where_the_images_go(
    tmp_path: Path, result: SegmentationResult, image_factory: Callable[[int, int], np.ndarray]
) -> None:
    out, root = run_exports(tmp_path, [result], ["images/a.jpg"], image_factory)
    text = (out / "yolo" / "data.yaml").read_text(encoding="utf-8")
    assert "--yolo-copy-images" in text and "image_sources.json" in text
    assert not (out / "yolo" / "images").exists()
    sources = json.loads((out / "yolo" / "image_sources.json").read_text())
    assert sources == {"images/_images/a.jpg": str((root / "images/a.jpg").resolve())}
    label = image_export_paths(out, PurePosixPath("images/a.jpg"), ["yolo-seg"])["yolo-seg"]
    assert label == out / "yolo" / "labels" / "_images" / "a.txt" and label.is_file()


def test_polygon2mask_gives_back_multi_part_masks(
    result: SegmentationResult, tmp_path: Path
) -> None:
    """Issue 12.6: under Ultralytics' own rasteriser each mask's lines together reach IoU >= 0.98
    (the bound the README states), also for scattered parts and holes."""
    masks = [m for m in result.masks] + [multipart(seed=s) for s in range(12)]
    rings = {
        f"{i}_{j}": ring.reshape(-1)
        for i, mask in enumerate(masks)
        for j, ring in enumerate(mask_rings(mask))
    }
    joined = {str(i): mask_rings(m, join_parts=True)[0].reshape(-1) for i, m in enumerate(masks)}
    np.savez(tmp_path / "rings.npz", **rings)
    np.savez(tmp_path / "joined.npz", **joined)
    sizes = [list(m.shape) for m in masks]
    filled = in_ultralytics(
        """
        import numpy as np
        from ultralytics.data.utils import polygon2mask
        out = {}
        for name in ("rings", "joined"):
            with np.load(ARGS["folder"] + f"/{name}.npz") as rings:
                for key in rings.files:
                    h, w = ARGS["sizes"][int(key.split("_")[0])]
                    m = polygon2mask((h, w), [rings[key]], color=1)
                    out[f"{name}/{key}"] = np.flatnonzero(m).tolist()
        print(json.dumps(out))
        """,
        tmp_path,
        folder=str(tmp_path),
        sizes=sizes,
    )

    def raster(key: str, shape: tuple[int, ...]) -> np.ndarray:
        m = np.zeros(int(np.prod(shape)), dtype=bool)
        m[filled[key]] = True
        return m.reshape(shape)

    n_joined = n_split = 0
    for i, mask in enumerate(masks):
        keys = [k for k in rings if k.split("_")[0] == str(i)]
        union = np.zeros(mask.shape, dtype=bool)
        for key in keys:
            union |= raster(f"rings/{key}", mask.shape)
        assert mask_iou(union, mask) >= JOIN_MIN_IOU, i
        n_joined += len(keys) == 1
        n_split += len(keys) > 1
    assert n_joined and n_split  # both cases exercised
    # Always joining (the previous behaviour) falls far below: the bridges paint the background.
    assert min(mask_iou(raster(f"joined/{i}", m.shape), m) for i, m in enumerate(masks)) < 0.9


def test_ultralytics_label_check_accepts_odd_names_and_files(
    tmp_path: Path,
    result_factory: Callable[..., SegmentationResult],
    image_factory: Callable[[int, int], np.ndarray],
) -> None:
    out, _ = run_exports(
        tmp_path,
        [odd_result(result_factory)],
        ["x.png"],
        image_factory,
        ExportOptions(yolo_copy_images=True),
    )
    got = in_ultralytics(
        """
        from ultralytics.data.utils import verify_image_label
        nm, nf, ne, nc, msg = verify_image_label(
            (ARGS["image"], ARGS["label"], "", False, ARGS["nc"], 0, 0, False))[-5:]
        print(json.dumps([nm, nf, ne, nc, msg]))
        """,
        tmp_path,
        image=str(out / "yolo" / "images" / "x.png"),
        label=str(out / "yolo" / "labels" / "x.txt"),
        nc=len(ODD_NAMES),
    )
    assert got[:4] == [0, 1, 0, 0], got[4]


def test_supervision_reads_the_yolo_dataset(
    tmp_path: Path,
    result_factory: Callable[..., SegmentationResult],
    image_factory: Callable[[int, int], np.ndarray],
) -> None:
    """supervision's YOLO loader (flat folders) takes the dataset as written, odd names too.

    It rounds the coordinates (Ultralytics truncates) and fills with the boundary, so each mask
    comes back with one more pixel on its right and bottom edges: the README says so."""
    sv = real_reader("supervision")
    results = [odd_result(result_factory), odd_result(result_factory)]
    out, _ = run_exports(
        tmp_path, results, ["a.jpg", "b.png"], image_factory, ExportOptions(yolo_copy_images=True)
    )
    yolo = out / "yolo"
    ds = sv.DetectionDataset.from_yolo(
        str(yolo / "images"), str(yolo / "labels"), str(yolo / "data.yaml"), force_masks=True
    )
    assert ds.classes == ODD_NAMES and len(ds) == 2
    lines = yolo_lines(results[0])
    for _, _, detections in ds:
        assert detections.class_id.tolist() == [int(line.split()[0]) for line in lines]
        for k in set(detections.class_id.tolist()):  # each class's pixels come back
            got = detections.mask[detections.class_id == k].any(axis=0)
            want = results[0].masks[results[0].class_ids == k].any(axis=0)
            grown = want.copy()
            grown[:, 1:] |= want[:, :-1]
            grown[1:, :] |= grown[:-1, :].copy()
            assert (got >= want).all() and (got <= grown).all()
            assert got.sum() > want.sum()  # the extra row / column is real


# ------------------------------------------------------------------------------ Label Studio


def test_label_studio_validates_every_prediction(
    tmp_path: Path,
    result_factory: Callable[..., SegmentationResult],
    image_factory: Callable[[int, int], np.ndarray],
) -> None:
    real_reader("label_studio_sdk")
    from label_studio_sdk.label_interface import LabelInterface

    out, _ = run_exports(
        tmp_path, [odd_result(result_factory)], ["a/my photo ü#1.jpg"], image_factory
    )
    config = (out / "labelstudio" / "config.xml").read_text(encoding="utf-8")
    interface = LabelInterface(config)
    interface.validate()  # the config itself
    (task,) = json.loads((out / "labelstudio" / "tasks.json").read_text(encoding="utf-8"))
    assert set(task["data"]) == {interface.get_object("image").value_name}
    for prediction in task["predictions"]:
        assert interface.validate_prediction(prediction, return_errors=True) == []
    labels = {r["value"]["polygonlabels"][0] for r in task["predictions"][0]["result"]}
    assert labels <= set(interface.get_control("label").labels)
    assert "cat\\x01" in labels  # the control character written as visible text


@pytest.mark.parametrize("root", ["/data/local-files/?d=", "/data/local-files/?d=photos"])
def test_label_studio_url_resolves_to_the_image(
    tmp_path: Path,
    root: str,
    result: SegmentationResult,
    image_factory: Callable[[int, int], np.ndarray],
) -> None:
    """Issue 12.4: ``my photo ü#1.jpg`` is URL-encoded; Label Studio's own local-files resolver
    maps the URL back to the file."""
    real_reader("label_studio_sdk")
    from label_studio_sdk._extensions.label_studio_tools.core.utils.io import (
        local_files_resolver,
        resolve_local_storage_file,
    )

    ref = "a/my photo ü#1+&.jpg"
    out, images = run_exports(
        tmp_path, [result], [ref], image_factory, ExportOptions(labelstudio_root=root)
    )
    (task,) = json.loads((out / "labelstudio" / "tasks.json").read_text(encoding="utf-8"))
    url = task["data"]["image"]
    assert url.startswith(root) and "#" not in url and " " not in url
    document_root = images.parent if root.endswith("photos") else images
    if root.endswith("photos"):
        (images.parent / "photos").symlink_to(images)
    with local_files_resolver(lambda rel: str(document_root / rel)):
        assert Path(resolve_local_storage_file(url)).resolve() == (images / ref).resolve()


# -------------------------------------------------------------------------------------- CVAT


def test_cvat_folder_has_one_document_that_datumaro_imports(
    tmp_path: Path,
    result_factory: Callable[..., SegmentationResult],
    image_factory: Callable[[int, int], np.ndarray],
) -> None:
    """Issue 12.3: one annotations.xml, no per-image XML anywhere under cvat/; datumaro (what CVAT
    builds its format support on) imports it, shapes rasterise back to the masks."""
    dm = real_reader("datumaro")
    from pycocotools import mask as mask_utils

    results = [odd_result(result_factory), odd_result(result_factory)]
    refs = ["a/x.jpg", "b/x.jpg"]
    out, images = run_exports(tmp_path, results, refs, image_factory)
    assert [p.relative_to(out).as_posix() for p in (out / "cvat").rglob("*")] == [
        "cvat/annotations.xml"
    ]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.xml")) == [
        "cvat/annotations.xml",
        "labelstudio/config.xml",
    ]
    # CVAT's layout for import: annotations.xml + images/<name>.
    folder = tmp_path / "cvat_dataset"
    folder.mkdir()
    (folder / "annotations.xml").write_bytes((out / "cvat" / "annotations.xml").read_bytes())
    for ref in refs:
        (folder / "images" / ref).parent.mkdir(parents=True, exist_ok=True)
        (folder / "images" / ref).write_bytes((images / ref).read_bytes())
    dataset = dm.Dataset.import_from(str(folder), "cvat")
    labels = [c.name for c in dataset.categories()[dm.AnnotationType.label]]
    assert labels == ["cat\\x01", "sofa\\ufffe", 'a & <b> "q"', "naïve\u2028🐱", "unknown"]
    items = sorted(dataset, key=lambda item: item.id)
    assert [item.id for item in items] == ["a/x", "b/x"]
    for item, result in zip(items, results, strict=True):
        h, w = result.image_size
        objects: dict[int, np.ndarray] = {}
        names: dict[int, str] = {}
        for n, ann in enumerate(item.annotations):
            key = ann.group or -1 - n
            rle = mask_utils.frPyObjects([list(map(float, ann.points))], h, w)
            filled = mask_utils.decode(mask_utils.merge(rle)).astype(bool)
            objects[key] = objects.get(key, np.zeros((h, w), dtype=bool)) | filled
            names[key] = labels[ann.label]
        assert len(objects) == len(result)
        for got, want in zip(objects.values(), result.masks, strict=True):
            assert np.array_equal(got, want)
        assert list(names.values()) == [labels[int(c)] for c in result.class_ids]


def test_cvat_document_follows_the_documented_format(
    tmp_path: Path,
    result_factory: Callable[..., SegmentationResult],
    image_factory: Callable[[int, int], np.ndarray],
) -> None:
    """The fields CVAT's own importer reads (CVAT for images 1.1, as CVAT documents it): unique
    integer image ids and names, sizes, polygons whose labels are declared, points 'x,y;...',
    occluded 0/1, integer z_order / group_id. A ZIP of cvat/ holds just that one XML."""
    results = [odd_result(result_factory), result_factory()]
    results[1].class_names = list(ODD_NAMES[:3])
    out, _ = run_exports(tmp_path, results, ["p/1.jpg", "q/2.jpg"], image_factory)
    path = out / "cvat" / "annotations.xml"
    root = ET.parse(path).getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    declared = [lb.findtext("name") for lb in root.iterfind("meta/task/labels/label")]
    assert len(declared) == len(set(declared)) == len(ODD_NAMES)
    images = root.findall("image")
    assert [im.get("id") for im in images] == ["0", "1"]
    assert [im.get("name") for im in images] == ["p/1.jpg", "q/2.jpg"]
    assert root.findtext("meta/task/size") == "2"
    for image, result in zip(images, results, strict=True):
        assert (int(image.get("height", 0)), int(image.get("width", 0))) == result.image_size
        for poly in image.iter("polygon"):
            assert poly.get("label") in declared
            assert poly.get("occluded") in ("0", "1")
            int(poly.get("z_order", "x"))
            int(poly.get("group_id", "0"))
            pairs = [p.split(",") for p in poly.get("points", "").split(";")]
            assert len(pairs) >= 3 and all(len(p) == 2 for p in pairs)
            assert all(0 <= float(v) <= max(result.image_size) for p in pairs for v in p)
    archive = tmp_path / "cvat.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in (out / "cvat").rglob("*"):
            z.write(p, p.relative_to(out / "cvat").as_posix())
    assert zipfile.ZipFile(archive).namelist() == ["annotations.xml"]


def test_a_tampered_record_gives_one_clear_error(
    tmp_path: Path, result: SegmentationResult, image_factory: Callable[[int, int], np.ndarray]
) -> None:
    from samadapter.errors import OutputError

    out, _ = run_exports(tmp_path, [result], ["a.jpg"], image_factory)
    record = image_export_paths(out, PurePosixPath("a.jpg"), ["cvat"])["cvat"]
    data = json.loads(record.read_text())
    data["polygons"][0]["points"] = "1,2;<evil/>"
    record.write_text(json.dumps(data))
    with pytest.raises(OutputError, match=r"a\.jpg\.json.*points"):
        write_run_exports(out, [PurePosixPath("a.jpg")], ["cvat"], result.class_names)
    record.write_text("[1, 2")
    with pytest.raises(OutputError, match="unreadable"):
        write_run_exports(out, [PurePosixPath("a.jpg")], ["cvat"], result.class_names)


# ------------------------------------------------------------------------- README's COCO notes


def test_cocoeval_needs_max_dets_for_sam_sized_outputs() -> None:
    """Issue 12.7: with more than 100 masks, COCOeval's default maxDets cuts the output."""
    real_reader("pycocotools")
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    n, h, w = 150, 60, 60
    anns = []
    for i in range(n):
        m = np.zeros((h, w), dtype=np.uint8, order="F")
        y, x = divmod(i, 15)
        m[y * 4 : y * 4 + 3, x * 4 : x * 4 + 3] = 1
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode()
        anns.append(
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": rle,
                "area": 9.0,
                "bbox": [x * 4, y * 4, 3, 3],
                "iscrowd": 0,
                "score": 1.0 - i / 1000,
            }
        )
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": w, "height": h, "file_name": "a.png"}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": anns,
    }
    gt.createIndex()

    def ap(max_dets: list[int] | None) -> float:
        ev = COCOeval(gt, gt.loadRes([dict(a) for a in anns]), "segm")
        if max_dets:
            ev.params.maxDets = max_dets
        ev.evaluate()
        ev.accumulate()
        precision = ev.eval["precision"][:, :, :, 0, -1]  # all areas, the largest maxDets
        return float(precision[precision > -1].mean())

    assert ap(None) < 0.7  # only the 100 best of 150 count
    assert ap([1, 10, 1000]) == pytest.approx(1.0)


def test_semantic_png_read_with_cv2_gives_colours_pil_gives_ids(
    tmp_path: Path, result: SegmentationResult, image: np.ndarray
) -> None:
    """Issue 12.7: the paletted semantic PNG holds ids; cv2.imread applies the palette."""
    from samadapter.io.writers import write_all

    write_all(image, result, tmp_path, "x")
    path = next(tmp_path.glob("x.semantic.png"))
    ids = np.array(Image.open(path))
    assert ids.ndim == 2 and set(np.unique(ids)) <= set(range(len(result.class_names) + 1))
    colours = cv2.imread(str(path))
    assert colours.ndim == 3 and not np.array_equal(colours[..., 0], ids)


# ---------------------------------------------------------------------------- a whole batch run


def test_a_batch_run_gives_datasets_the_tools_load(tmp_path: Path) -> None:
    """Issues 12.2-12.4 end to end: inputs under ``ds/images/{train,val}`` plus ``ds/extra``; the
    run's yolo/, labelstudio/ and cvat/ folders load in Ultralytics, Label Studio's validator
    and datumaro as they are (images linked into yolo/, cvat/ holding one XML)."""
    dm = real_reader("datumaro")
    real_reader("label_studio_sdk")
    from label_studio_sdk.label_interface import LabelInterface

    from samadapter.batch import BatchOptions, BatchRunner, collect_inputs
    from samadapter.models import load_segmenter
    from samadapter.vocab import parse_classes

    samples = Path(__file__).resolve().parents[2] / "samples"
    ds = tmp_path / "ds"
    for rel in ("images/train/p1.jpg", "images/val/my photo ü#1.jpg", "extra/p1.jpg"):
        (ds / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.open(samples / "chelsea.jpg").resize((64, 48)).save(ds / rel)
    out = tmp_path / "out"
    seg = load_segmenter(
        "tiny-random", device="cpu", settings={"keep_unknown": True, "score_thresh": 0.0}
    )
    items = collect_inputs([ds], recursive=True)
    summary = BatchRunner(
        seg,
        parse_classes("cat,sofa"),
        BatchOptions(out_dir=out, exports=ALL, export_options=ExportOptions(yolo_copy_images=True)),
    ).run(items)
    assert summary.ok and summary.count("done") == 3
    masks = sum(r.masks for r in summary.records)
    assert masks > 0

    got = in_ultralytics(
        """
        from ultralytics.data.dataset import YOLODataset
        from ultralytics.data.utils import check_det_dataset
        data = check_det_dataset(ARGS["yaml"])
        ds = YOLODataset(img_path=data["train"], imgsz=64, cache=False, augment=False,
                         data=data, task="segment")
        print(json.dumps([[lb["im_file"], len(lb["segments"])] for lb in ds.labels]))
        """,
        tmp_path,
        yaml=str(out / "yolo" / "data.yaml"),
    )
    assert sorted(Path(f).relative_to(out / "yolo").as_posix() for f, _ in got) == [
        "images/_images/train/p1.jpg",
        "images/_images/val/my photo ü#1.jpg",
        "images/extra/p1.jpg",
    ]
    assert sum(n for _, n in got) >= masks  # every mask is a line (or several)

    interface = LabelInterface((out / "labelstudio" / "config.xml").read_text(encoding="utf-8"))
    tasks = json.loads((out / "labelstudio" / "tasks.json").read_text(encoding="utf-8"))
    assert sorted(t["data"]["image"] for t in tasks) == [
        "/data/local-files/?d=extra/p1.jpg",
        "/data/local-files/?d=images/train/p1.jpg",
        "/data/local-files/?d=images/val/my%20photo%20%C3%BC%231.jpg",
    ]
    for task in tasks:
        assert interface.validate_prediction(task["predictions"][0], return_errors=True) == []

    assert [p.name for p in (out / "cvat").rglob("*")] == ["annotations.xml"]
    folder = tmp_path / "cvat_dataset"
    (folder / "images").mkdir(parents=True)
    (folder / "annotations.xml").write_bytes((out / "cvat" / "annotations.xml").read_bytes())
    for item in items:
        (folder / "images" / item.file_name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "images" / item.file_name).write_bytes(item.path.read_bytes())
    dataset = dm.Dataset.import_from(str(folder), "cvat")
    assert sorted(item.id for item in dataset) == [
        "extra/p1",
        "images/train/p1",
        "images/val/my photo ü#1",
    ]
    assert (
        sum(len({a.group or -1 - n for n, a in enumerate(item.annotations)}) for item in dataset)
        == masks
    )

from __future__ import annotations

from visionprefer.evaluate.images import generate_images, read_image_dir


def test_generate_into_a_layout_resumes_and_reads_back(tmp_path):
    items = [("anime/00000.jpg", "a cat"), ("anime/00001.jpg", "a dog"), ("photo/00000.jpg", "a car")]
    meta = generate_images("tiny-sd15", items, tmp_path / "imgs", batch_size=2, progress=False)
    assert meta["pipeline"] == "StableDiffusionPipeline" and meta["steps"] == 2 and meta["height"] == 64
    files = sorted(p.relative_to(tmp_path / "imgs").as_posix() for p in (tmp_path / "imgs").rglob("*.jpg"))
    assert files == sorted(r for r, _ in items)
    first = (tmp_path / "imgs" / "anime/00000.jpg").read_bytes()
    (tmp_path / "imgs" / "anime/00001.jpg").unlink()
    generate_images("tiny-sd15", items, tmp_path / "imgs", batch_size=2, progress=False)
    assert (tmp_path / "imgs" / "anime/00000.jpg").read_bytes() == first  # kept, not remade
    assert (tmp_path / "imgs" / "anime/00001.jpg").exists()

    (tmp_path / "imgs" / "photo/00001.jpg").write_bytes(b"")
    (tmp_path / "imgs" / "photo/00002.jpg").write_bytes(b"not an image at all")
    got = read_image_dir(
        tmp_path / "imgs", [r for r, _ in items] + ["photo/00001.jpg", "photo/00002.jpg", "photo/00003.jpg"]
    )
    assert sorted(got.files) == sorted(r for r, _ in items)
    assert got.skipped["photo/00001.jpg"] == "zero-byte file"
    assert got.skipped["photo/00002.jpg"].startswith("corrupt image")
    assert got.skipped["photo/00003.jpg"] == "missing"
    assert got.skip_counts() == {"zero-byte file": 1, "corrupt image": 1, "missing": 1}

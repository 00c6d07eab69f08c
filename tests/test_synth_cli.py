"""`gold synth` as a user runs it: files, grids, determinism, errors."""
import hashlib

import numpy as np
import rasterio


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_synth_writes_four_aligned_geotiffs_deterministically(run_gold, tmp_path):
    run_gold("synth", "--out", tmp_path / "a", "--size", 1024, "--seed", 0)
    run_gold("synth", "--out", tmp_path / "b", "--size", 1024, "--seed", 0)
    run_gold("synth", "--out", tmp_path / "c", "--size", 1024, "--seed", 1)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["synth_A.tif", "synth_B.tif", "synth_D.tif", "synth_E.tif"]
    grids = []
    for name in files:
        with rasterio.open(tmp_path / "a" / name) as ds:
            grids.append((ds.crs, ds.transform, ds.width, ds.height))
            assert ds.crs.is_projected and ds.transform.a == 2.0
    assert all(g == grids[0] for g in grids)
    assert grids[0][2:] == (1024, 1024)
    for name in files:   # same seed: byte-identical rasters
        assert digest(tmp_path / "a" / name) == digest(tmp_path / "b" / name)
    with rasterio.open(tmp_path / "a" / "synth_E.tif") as a, rasterio.open(tmp_path / "c" / "synth_E.tif") as c:
        la, lc = a.read(1), c.read(1)
    assert not np.array_equal(la, lc)   # another seed: another scene
    assert set(np.unique(la)) == {0, 255}
    assert 0.03 <= (la > 0).mean() <= 0.30


def test_synth_refuses_to_overwrite_and_explains_in_one_line(run_gold, tmp_path):
    run_gold("synth", "--out", tmp_path, "--size", 64)
    before = digest(tmp_path / "synth_A.tif")
    proc = run_gold("synth", "--out", tmp_path, "--size", 64, "--seed", 5, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "synth_A.tif" in lines[0] and "--overwrite" in lines[0]
    assert digest(tmp_path / "synth_A.tif") == before   # nothing was touched


def test_synth_sar_is_linear_power_and_says_so(run_gold, tmp_path):
    run_gold("synth", "--out", tmp_path, "--size", 128, "--sar-bands", 2)
    with rasterio.open(tmp_path / "synth_B.tif") as ds:
        assert ds.count == 2 and ds.descriptions == ("VV", "VH")
        assert ds.tags()["units"] == "linear" and ds.dtypes[0] == "float32"
        assert (ds.read() > 0).all()

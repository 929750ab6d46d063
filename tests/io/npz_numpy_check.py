#!/usr/bin/env python3
"""Cross-checks runtime/io's .npy/.npz readers and writers against NumPy.

usage: npz_numpy_check.py IO_NPZ_TEST_BINARY
Writes fixtures with np.savez, np.savez_compressed and np.save (including the
refused layouts: Fortran order, big-endian, int16), runs the binary's
numpy_fixtures case on them, then loads what that case wrote with np.load.
Exits 77 (ctest: skipped) when NumPy is not installed.
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    print("numpy is not installed: skipped")
    sys.exit(77)


def fixtures(d):
    i = np.arange(7000)
    arrays = dict(
        x=((i % 101) / 8.0).astype("<f4").reshape(1000, 7),
        y=(np.arange(1000) % 20).astype("<i8"),
        h=(np.arange(4) / 4).astype("<f2"),
        u=np.arange(5, dtype=np.uint8),
        b=np.array([False, True]),
        d=np.arange(3) * 0.1,
    )
    np.savez(os.path.join(d, "savez.npz"), **arrays)
    np.savez_compressed(os.path.join(d, "savez_compressed.npz"), **arrays)
    with open(os.path.join(d, "v2.npy"), "wb") as f:
        np.lib.format.write_array(f, np.arange(6, dtype="<i4"), version=(2, 0))
    np.save(os.path.join(d, "fortran.npy"), np.asfortranarray(np.ones((2, 3), "<f4")))
    np.save(os.path.join(d, "big_endian.npy"), np.ones(3, ">f4"))
    np.save(os.path.join(d, "int16.npy"), np.ones(3, "<i2"))


def check_ours(d):
    for name in ("ours.npz", "ours_compressed.npz"):
        z = np.load(os.path.join(d, name))
        assert list(z.keys()) == ["x", "y", "u", "scalar"], (name, list(z.keys()))
        x = z["x"]
        assert x.dtype == np.float32 and x.shape == (10000, 2), (x.dtype, x.shape)
        assert np.array_equal(x.ravel(), (np.arange(20000) % 97).astype(np.float32) * 0.5)
        assert z["y"].dtype == np.int64 and z["y"].tolist() == [0, 7, -2]
        assert z["u"].dtype == np.uint8 and z["u"].tolist() == [[0, 1], [254, 255]]
        assert z["scalar"].shape == () and z["scalar"] == 2.5
    a = np.load(os.path.join(d, "ours.npy"))
    assert a.dtype == np.int32 and a.tolist() == [[1, -2, 3], [-4, 5, -6]], a


def main():
    binary = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="troupe-npz-") as d:
        fixtures(d)
        env = dict(os.environ, TROUPE_NUMPY_FIXTURES=d)
        subprocess.run([binary, "--run_test=numpy_fixtures", "--log_level=test_suite"],
                       env=env, check=True)
        check_ours(d)
    print("numpy cross-check passed")


if __name__ == "__main__":
    main()

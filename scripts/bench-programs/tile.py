"""tile.py: the peer of `smil-bench tile` — openslide-python reading the same 256-pixel tiles of the
same slide (RGB, as CLAM's loaders read them), one worker thread and several, and CLAM's tissue
segmentation (create_patches_fp.py's segmentTissue with the tcga preset) in OpenCV.

Usage: tile.py SLIDE COORDS_H5 [--iters N] [--system-openslide]
--system-openslide makes openslide-python load the system's libopenslide (Debian's 3.4.1, the one
smil links) instead of the openslide-bin wheel's.
"""
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor

if "--system-openslide" in sys.argv:
    sys.modules["openslide_bin"] = None  # openslide-python then falls back to the system library
import cv2
import h5py
import numpy as np
import openslide


def report(name, value, unit, extra=""):
    mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT name={name} value={value:.4g} unit={unit} peak_rss_mib={mib:.0f} {extra}".rstrip(), flush=True)


def segment(slide, level=None):
    # CLAM's segmentTissue, tcga preset: seg_level -1, sthresh 8, mthresh 7, close 4, a_t 16, a_h 4, 8 holes.
    if level is None:
        level = slide.get_best_level_for_downsample(64)
    img = np.array(slide.read_region((0, 0), level, slide.level_dimensions[level]))
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    med = cv2.medianBlur(hsv[:, :, 1], 7)
    _, binary = cv2.threshold(med, 8, 255, cv2.THRESH_BINARY)
    binary = cv2.morphologyEx(binary, cv2.MORPH_CLOSE, np.ones((4, 4), np.uint8))
    w0, h0 = slide.level_dimensions[0]
    w, h = slide.level_dimensions[level]
    scale = (w0 / w, h0 / h)
    area = int(512 ** 2 / (scale[0] * scale[1]))
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    hierarchy = np.squeeze(hierarchy, axis=(0,))[:, 2:]
    kept = []
    for i in np.flatnonzero(hierarchy[:, 1] == -1):
        holes = np.flatnonzero(hierarchy[:, 1] == i)
        a = cv2.contourArea(contours[i]) - sum(cv2.contourArea(contours[j]) for j in holes)
        if a > 16 * area:
            big = sorted((contours[j] for j in holes), key=cv2.contourArea, reverse=True)[:8]
            kept.append((np.array(contours[i] * scale, dtype="int32"),
                         [np.array(hh * scale, dtype="int32") for hh in big if cv2.contourArea(hh) > 4 * area]))
    return kept


def main():
    path, coords_path = sys.argv[1], sys.argv[2]
    iters = int(sys.argv[sys.argv.index("--iters") + 1]) if "--iters" in sys.argv else 5
    with h5py.File(coords_path, "r") as f:
        coords = f["coords"][:]
    slide = openslide.OpenSlide(path)
    for name, level in (("tissue_detection", None), ("tissue_detection_768x640", 2)):
        times = []
        for _ in range(iters + 1):
            t0 = time.perf_counter()
            segment(slide, level)
            times.append(time.perf_counter() - t0)
        times = sorted(times[1:])
        report(name, times[len(times) // 2] * 1000, "ms")

    def one_pass(workers):
        s = openslide.OpenSlide(path)

        def read(xy):
            return np.asarray(s.read_region((int(xy[0]), int(xy[1])), 0, (256, 256)).convert("RGB"))

        t0 = time.perf_counter()
        if workers == 1:
            for xy in coords:
                read(xy)
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(read, coords, chunksize=16))
        return len(coords) / (time.perf_counter() - t0)

    for workers in (1, 2, 4):
        rates = sorted(one_pass(workers) for _ in range(max(1, iters)))
        report(f"tiles_256_rgb_workers{workers}", rates[len(rates) // 2], "tiles/s", f"tiles={len(coords)}")


if __name__ == "__main__":
    main()

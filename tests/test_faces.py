"""Face detection and alignment: MTCNN on a real photo and on pasted synthetic faces, geometry."""

from __future__ import annotations

from pathlib import Path

import cv2
import facenet_pytorch
import matplotlib
import numpy as np
import pytest
import torch
import yaml

from fer_lightning.data.images import read_rgb
from fer_lightning.data.photos import render_photo
from fer_lightning.data.synthetic import _INTENSITY_BETA, _STREAM_IMAGE, _rng, _split_labels
from fer_lightning.data.synthetic_faces import render_face, render_face_with_landmarks
from fer_lightning.faces.align import FaceTemplate, align_face, similarity_to
from fer_lightning.faces.detect import HaarDetector, MTCNNDetector

CONF = Path(__file__).resolve().parents[1] / "conf"
# Grace Hopper's official US Navy portrait (public domain), shipped inside matplotlib's wheel.
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def template(name: str) -> FaceTemplate:
    return FaceTemplate(**yaml.safe_load((CONF / "face_template" / f"{name}.yaml").read_text()))


@pytest.fixture(scope="module")
def mtcnn() -> MTCNNDetector:
    return MTCNNDetector(device="cpu")


def test_mtcnn_weights_ship_in_the_wheel_and_load_weights_only():
    data = Path(facenet_pytorch.__file__).parent / "data"
    for net in ("pnet", "rnet", "onet"):
        state = torch.load(data / f"{net}.pt", weights_only=True)  # no pickled code runs
        assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_mtcnn_finds_the_face_in_a_real_photograph(mtcnn):
    rgb = read_rgb(str(GRACE_HOPPER))  # 512 x 600, one face
    (face,) = mtcnn.detect([rgb])[0]
    assert face.score > 0.99
    x, y, w, h = face.box
    assert 150 < x < 200 and 100 < y < 150 and 160 < w < 200 and 200 < h < 240
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < nose[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert ((face.landmarks >= (x, y)) & (face.landmarks <= (x + w, y + h))).all()


def test_render_face_with_landmarks_is_render_face_plus_its_landmarks():
    for seed in range(5):
        image, landmarks = render_face_with_landmarks(np.random.default_rng(seed), seed, 0.7, 100)
        assert (image == render_face(np.random.default_rng(seed), seed, 0.7, 100)).all()
        assert landmarks.shape == (5, 2) and ((landmarks > 10) & (landmarks < 90)).all()
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = landmarks
        assert lx < nx < rx and mlx < nx < mrx and max(ly, ry) < ny < min(mly, mry)


def test_synthetic_template_is_the_generators_mean_face():
    clean, _ = _split_labels(0, "train", 300, 0.0)
    points = []
    for i, label in enumerate(clean):  # drawn as generate_rafdb draws them
        rng = _rng(0, _STREAM_IMAGE, 0, i)
        intensity = float(rng.beta(*_INTENSITY_BETA))
        points.append(render_face_with_landmarks(rng, int(label), intensity, 100)[1])
    assert np.abs(np.mean(points, axis=0) - template("synthetic").points).max() < 0.6


def test_alignment_inverts_a_paste_exactly():
    """A face pasted by a known similarity comes back as it was drawn (true landmarks)."""
    rng = np.random.default_rng(7)
    for scale in (0.6, 1.0, 2.5):  # shrunk, same size, enlarged in the photo
        face, landmarks = render_face_with_landmarks(rng, 3, 0.8, 100)
        m = cv2.getRotationMatrix2D((49.5, 49.5), float(rng.uniform(-30, 30)), scale)
        m[:, 2] += (rng.uniform(150, 490) - 49.5, rng.uniform(150, 330) - 49.5)  # inside
        photo = np.full((480, 640, 3), 128, np.uint8)
        cv2.warpAffine(face, m, (640, 480), photo, cv2.INTER_LINEAR, cv2.BORDER_TRANSPARENT)
        pasted = landmarks @ m[:, :2].T + m[:, 2]
        own = FaceTemplate(landmarks, 100)  # a template this face fits exactly
        a = similarity_to(own, pasted)
        assert np.abs(pasted @ a[:, :2].T + a[:, 2] - landmarks).max() < 0.01
        aligned = align_face(photo, pasted, own)
        assert aligned.shape == (100, 100, 3)
        inner = (slice(10, 90), slice(10, 90))  # the border may show the grey photo
        diff = np.abs(aligned[inner].astype(int) - face[inner].astype(int)).mean()
        assert diff < (12 if scale < 1 else 5), (scale, diff)  # a shrunk face lost detail


def test_alignment_puts_detected_faces_landmarks_on_the_template(mtcnn):
    """Pasted faces (random size 60-200 px, rotation +-25 deg, position) through MTCNN + align.

    The true landmarks should land within a few pixels of their template positions. The
    drawn people and expressions differ (the landmarks spread 3-4 px at 100 px around
    the mean face) and some wear sunglasses or hold a hand to their face, so a few faces
    may miss by more; 90 % must not.
    """
    synthetic = template("synthetic")
    photos = [render_photo(np.random.default_rng(100 + s), faces=(2, 3)) for s in range(8)]
    detections = mtcnn.detect([image for image, _ in photos])
    distances = []
    for (_, truth), faces in zip(photos, detections, strict=True):
        for t in truth:
            face = min(faces, key=lambda f: np.abs(f.landmarks - t.landmarks).max())
            a = similarity_to(synthetic, face.landmarks)
            moved = t.landmarks @ a[:, :2].T + a[:, 2]
            distances.append(np.linalg.norm(moved - synthetic.points, axis=1))
    distances = np.array(distances)  # [faces, 5] px
    assert len(distances) >= 16
    assert distances.mean() <= 3.5, distances.mean(axis=0).round(1)
    assert np.mean(distances.max(axis=1) <= 6.0) >= 0.9, distances.max(axis=1).round(1)


def test_batched_detection_matches_one_image_at_a_time(mtcnn):
    images = [render_photo(np.random.default_rng(s), faces=(1, 2))[0] for s in range(3)]
    images.append(cv2.resize(images[0], (320, 240), interpolation=cv2.INTER_AREA))  # mixed sizes
    together = mtcnn.detect(images)
    for image, faces in zip(images, together, strict=True):
        alone = mtcnn.detect([image])[0]
        assert len(faces) == len(alone) >= 1
        for a, b in zip(faces, alone, strict=True):
            assert np.abs(np.subtract(a.box, b.box)).max() < 0.5
            assert np.abs(a.landmarks - b.landmarks).max() < 0.5


def test_min_face_size_and_min_score_filter_faces(mtcnn):
    image, _ = render_photo(np.random.default_rng(2), faces=(3, 3))
    faces = mtcnn.detect([image])[0]
    assert len(faces) == 3
    sizes = sorted(max(f.box[2:]) for f in faces)
    limit = round((sizes[0] + sizes[1]) / 2)  # between the two smallest faces
    bigger = MTCNNDetector(min_face_size=limit, device="cpu").detect([image])[0]
    assert len(bigger) == 2 and all(max(f.box[2:]) >= limit for f in bigger)
    threshold = float(np.median([f.score for f in faces]))
    sure = MTCNNDetector(min_score=threshold, device="cpu").detect([image])[0]
    assert sorted(f.score for f in sure) == sorted(f.score for f in faces if f.score >= threshold)
    assert len(sure) < 3


def test_haar_gives_boxes_only():
    image, _ = render_photo(np.random.default_rng(12), faces=(3, 3), max_angle=0)
    faces = HaarDetector().detect([image])[0]
    assert len(faces) == 3 and all(f.landmarks is None and f.score is None for f in faces)


def test_bad_settings_fail_clearly():
    with pytest.raises(ValueError, match=r"detector \(mtcnn\): invalid min_score=2"):
        MTCNNDetector(min_score=2)
    with pytest.raises(ValueError, match=r"face_template.points: need 5 \[x, y\] pairs"):
        FaceTemplate([[30, 40], [70, 40]])
    with pytest.raises(ValueError, match="inside the 100 px square"):
        FaceTemplate([[30, 40], [70, 40], [50, 60], [40, 80], [60, 180]])

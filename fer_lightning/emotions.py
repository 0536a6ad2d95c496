"""The canonical label space: RAF-DB's seven basic emotions, in RAF-DB's order.

Class index ``i`` (0..6) is RAF-DB label ``i + 1``. Other data sets use other
orders, so labels are always mapped by *name* through :func:`emotion_index`.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "surprise",
    "fear",
    "disgust",
    "happiness",
    "sadness",
    "anger",
    "neutral",
)
NUM_CLASSES = len(EMOTIONS)
PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{e}" for e in EMOTIONS)  # CSVs of probabilities

# RAF-DB train-split counts (official "basic" set), used as default class
# proportions for the synthetic set and as a reference for imbalance.
RAFDB_TRAIN_COUNTS: tuple[int, ...] = (1290, 281, 717, 4772, 1982, 705, 2524)
RAFDB_TEST_COUNTS: tuple[int, ...] = (329, 74, 160, 1185, 478, 162, 680)

_SYNONYMS: dict[str, str] = {
    "surprise": "surprise",
    "surprised": "surprise",
    "fear": "fear",
    "fearful": "fear",
    "scared": "fear",
    "disgust": "disgust",
    "disgusted": "disgust",
    "happiness": "happiness",
    "happy": "happiness",
    "sadness": "sadness",
    "sad": "sadness",
    "anger": "anger",
    "angry": "anger",
    "neutral": "neutral",
}


def emotion_index(name: str | int) -> int:
    """Map an emotion name (any case, common synonyms) or a RAF-DB label 1..7 to 0..6.

    Raises ``ValueError`` naming the accepted values, so readers can wrap it with
    the offending file and line.
    """
    key = str(name).strip().lower()
    if key.isdigit():
        raf = int(key)
        if 1 <= raf <= NUM_CLASSES:
            return raf - 1
        raise ValueError(f"label {raf} is outside RAF-DB's 1..{NUM_CLASSES}")
    if key in _SYNONYMS:
        return EMOTIONS.index(_SYNONYMS[key])
    raise ValueError(
        f"unknown emotion {name!r}; use a RAF-DB label 1..7 or one of "
        + ", ".join(sorted(_SYNONYMS))
    )

"""face_recognition's API on the ported engine: a drop-in for ``face_recognition`` 1.3.

``import face_recognition`` → ``import face_engine.compat as face_recognition``;
``from face_recognition import api`` → ``from face_engine.compat import api`` (likewise
``face_recognition_cli`` and ``face_detection_cli``). ``face_engine.compat.batch`` is the fast path
for many images. Nothing is loaded until a function needs it. docs/compat.md tells what is
identical, what differs and how much faster it is.
"""

from face_engine.compat._models import MmodRectangle, NonCommercialModelWarning
from face_engine.compat.api import (
    batch_face_locations,
    compare_faces,
    face_distance,
    face_encodings,
    face_landmarks,
    face_locations,
    load_image_file,
)

__version__ = "1.3.0"  # the face_recognition API version this package follows

__all__ = [
    "MmodRectangle",
    "NonCommercialModelWarning",
    "batch_face_locations",
    "compare_faces",
    "face_distance",
    "face_encodings",
    "face_landmarks",
    "face_locations",
    "load_image_file",
]

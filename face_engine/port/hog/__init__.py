"""dlib's HOG frontal face detector (``dlib.get_frontal_face_detector()``) re-implemented.

* :mod:`.model`       – the detector's filters, read from what the installed dlib saves (numpy);
* :mod:`.svd`         – dlib's own SVD, for the separable filters it scans with (pure Python);
* :mod:`.pyramid`     – dlib's uint8 resizes: ``pyramid_down<6>`` levels and ``pyramid_up`` (numpy);
* :mod:`.fhog`        – ``extract_fhog_features``, bit for bit (numpy);
* :mod:`.scan`        – filter scan, thresholds, box mapping, NMS: the exact reference (numpy);
* :mod:`.layout`      – every pyramid level on one canvas of cells (numpy);
* :mod:`.torch_hog`   – the detector in torch, levels and images batched, CPU or CUDA;
* :mod:`.dlib_levels` – dlib's own scan, one pyramid level per thread (exact, all cores).

Nothing here is imported by ``face_engine`` itself; torch only by :mod:`.torch_hog`.
"""

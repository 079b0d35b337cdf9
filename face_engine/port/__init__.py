"""Exact ports of dlib's face networks and face-chip extraction to numpy / PyTorch / ONNX.

Modules (import them directly; this package imports nothing, so that importing
``face_engine`` never pulls in the optional torch / onnxruntime runtimes):

* :mod:`.dat_format` – reader for dlib's ``.dat`` serialization (numpy only);
* :mod:`.chip`       – ``dlib.get_face_chip`` bit for bit (numpy only);
* :mod:`.detector`   – the CNN detector's tiled pyramid, decoding and NMS (numpy only);
* :mod:`.resnet`     – the recognition ResNet as a torch module (needs torch);
* :mod:`.mmod`       – the detector network as a torch module (needs torch);
* :mod:`.convert`    – convert once, cache by weight hash, load torch state or ONNX models;
* :mod:`.bench`      – ``python -m face_engine.port.bench``: timings against dlib.
"""

"""Faces in photos: detectors (MTCNN, Haar), alignment onto a template, drawings of both.

The classifier was trained on aligned faces (RAF-DB's ``aligned`` images, or the
synthetic set drawn like them); this package turns a photo into such faces.
"""

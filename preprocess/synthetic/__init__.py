"""The embedded sample generator: synthetic 3-D scans and face sequences made from one
real face (scikit-image's ``astronaut()`` and its 68 dlib landmarks), written in the
real file formats so that the pipeline runs end to end through the real readers.

Modules: ``astronaut`` (the image and its landmarks), ``expressions`` (expression
tables and the smooth interpolant), ``face_model`` (the parametric 3-D face and the
shared mesh topology), ``scans`` (range grids and meshes with landmarks), ``sequences``
(warped frames with exact landmarks), ``sample`` (``write_sample``: everything on disk
plus ``truth.json``).
"""
from preprocess.synthetic.sample import SampleItem, SampleManifest, write_sample

__all__ = ["SampleItem", "SampleManifest", "write_sample"]

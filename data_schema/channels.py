"""The attribute-map channels: their order (AMDFN, seed 000) and how each is normalised.

This is part of the store contract: the ``maps`` schemas point here, the renderer
(``preprocess.render``) and the depth cleaning follow it, and every shard of a maps
store carries it as JSON.
"""

#: Colour of a hit pixel when the mesh has neither a texture nor vertex colours.
FALLBACK_GRAY = 0.5

#: AMDFN channel order (seed 000) of :func:`attribute_maps`.
CHANNELS = ("Nx", "Ny", "Nz", "D", "C", "R", "G", "B")

#: How each channel of :func:`attribute_maps` is made from the mesh, as plain
#: JSON-able data; store schemas copy it verbatim.  Every channel is in [0, 1] and
#: 0 where the ray misses the face (``valid`` tells a miss from a true 0).
CHANNEL_NORMALISATION: dict = {
    "channels": list(CHANNELS),
    "background": 0.0,
    "camera": ("orthographic, looking along -Z from +Z; row 0 = max y (top), "
               "col 0 = min x (left); pixel centres"),
    "Nx": {"source": "unit vertex normals, barycentric-interpolated at the first hit, "
                     "renormalised (zero-length -> the hit triangle's normal facing +Z)",
           "formula": "(n_x + 1) / 2", "input_range": [-1.0, 1.0], "range": [0.0, 1.0]},
    "Ny": {"source": "as Nx", "formula": "(n_y + 1) / 2",
           "input_range": [-1.0, 1.0], "range": [0.0, 1.0]},
    "Nz": {"source": "as Nx", "formula": "(n_z + 1) / 2",
           "input_range": [-1.0, 1.0], "range": [0.0, 1.0]},
    "D": {"source": "z of the first hit, mm",
          "formula": "clip((z - (z_nose - depth_range_mm)) / depth_range_mm, 0, 1)",
          "z_nose": "nose_z_mm if given, else the largest z over the hit pixels",
          "range": [0.0, 1.0]},
    "C": {"source": "per-vertex shape index (seed 000 eq. 5), barycentric-interpolated",
          "formula": "clip(s, 0, 1)", "range": [0.0, 1.0]},
    "R": {"source": "texture bilinear at the interpolated uv (v up; clamp at the "
                    "texture border), else barycentric-interpolated vertex colours, "
                    f"else {FALLBACK_GRAY}",
          "formula": "value / 255", "range": [0.0, 1.0]},
    "G": {"source": "as R", "formula": "value / 255", "range": [0.0, 1.0]},
    "B": {"source": "as R", "formula": "value / 255", "range": [0.0, 1.0]},
}

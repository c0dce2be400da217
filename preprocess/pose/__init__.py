"""Registration of a scan to the canonical frame, one module per method.

The methods are fallbacks tried in order (issue 13, build item 3): the scan's own
landmark file, dlib on the texture render, dlib on a shaded render of the geometry,
and, when none of those gives landmarks, a purely geometric registration of the face
surface to a template surface.  Each returns a
:class:`preprocess.registration.Registration` (``p_template ~= R @ p_scan + t``, mm).

Modules:

* :mod:`preprocess.pose.geometric` -- nose tip, initial pose from the face's principal
  axes and symmetry, then point-to-plane ICP to the template surface;
* :mod:`preprocess.pose.template_surface` -- that template surface (a mean,
  mirror-symmetric face depth grid round the nose tip), its builder and the shipped
  file ``preprocess/data/template_surface.npz``.
"""

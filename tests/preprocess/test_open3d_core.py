"""preprocess.open3d_core: open3d imported without its viewer still casts rays, and the
viewer can still be imported afterwards (run in a fresh interpreter: the test process
may have imported open3d already)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import numpy as np
from preprocess.open3d_core import open3d_core
o3d = open3d_core()
skipped = [m for m in ("open3d.visualization", "dash", "plotly") if m in sys.modules]
# one triangle in the plane z = 2 and a ray straight down onto it from z = 10
scene = o3d.t.geometry.RaycastingScene()
scene.add_triangles(o3d.core.Tensor(np.array([[0, 0, 2], [4, 0, 2], [0, 4, 2]], np.float32)),
                    o3d.core.Tensor(np.array([[0, 1, 2]], np.uint32)))
hit = scene.cast_rays(o3d.core.Tensor(np.array([[1, 1, 10, 0, 0, -1]], np.float32)))
t = float(hit["t_hit"].numpy()[0])
again = open3d_core() is o3d
import open3d.visualization as vis
print(json.dumps({"skipped": skipped, "t": t, "again": again, "viewer": hasattr(vis, "draw_plotly")}))
"""


def test_rays_are_cast_without_the_viewer_and_the_viewer_still_imports_later():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["skipped"] == []          # neither the viewer nor dash / plotly were loaded
    assert abs(got["t"] - 8.0) < 1e-6   # 10 - 2: the hit is where the geometry says
    assert got["again"] and got["viewer"]

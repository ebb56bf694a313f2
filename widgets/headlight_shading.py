"""Blinn-Phong lighting of a face mesh computed per vertex (Gouraud), for software GL.

Why not vispy's ShadingFilter: it lights every pixel, carrying four varyings (13 floats) from the
vertex shader, mapping each vertex through four transform chains, and it re-sets ten uniforms
from Python on every data change. With Mesa llvmpipe (the studio under Xvfb on a 2-core machine)
that filter was half the cost of drawing a face: `benchmarks/studio_fps.py` and docs/studio_speed.md
measured it. A face of 7,500 vertices drawn a few hundred pixels wide has triangles of a few pixels,
so lighting at the vertices and interpolating looks the same while the rasteriser carries one
varying. The light is a head-light (it follows the camera), so the Blinn-Phong halfway vector is
one uniform; the normal is turned towards the viewer first, which lights both sides of the surface
the way vispy's filter does with ``gl_FrontFacing``. Uniforms are set only when the light moves or
the coefficients change; normals are uploaded when the mesh data change.
"""
from __future__ import annotations

import numpy as np
from vispy.gloo import VertexBuffer
from vispy.visuals.filters import Filter
from vispy.visuals.shaders import Function, Varying

_VERTEX = """
void headlight_vertex() {
    vec4 normal_scene = $visual2scene(vec4($normal, 1.0));
    vec4 origin_scene = $visual2scene(vec4(0.0, 0.0, 0.0, 1.0));
    vec3 n = normalize(normal_scene.xyz / normal_scene.w - origin_scene.xyz / origin_scene.w);
    n = dot(n, $eye_dir) > 0.0 ? -n : n;  // the side the viewer sees
    float diffuse = max(dot(-$light_dir, n), 0.0);
    float specular = diffuse > 0.0 ? pow(clamp(dot($halfway, n), 0.0, 1.0), $shininess) : 0.0;
    $v_light = vec2($ambient + $diffuse * diffuse, $specular * specular);
}
"""
_FRAGMENT = """
void headlight_fragment() {
    gl_FragColor.rgb = gl_FragColor.rgb * $v_light.x + vec3($v_light.y);
}
"""


def _unit(v: np.ndarray | tuple) -> np.ndarray:
    v = np.asarray(v, np.float64).reshape(3)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"direction must be a finite non-zero 3-vector, got {tuple(v)}")
    return v / norm


class HeadlightShading(Filter):
    """Per-vertex ambient + diffuse + Blinn-Phong specular, white light.

    ``ambient``, ``diffuse`` and ``specular`` are the light's strengths (vispy's coefficient times
    light alpha); ``light_dir`` is the direction the light travels and ``eye_dir`` the direction
    the camera looks, both in scene coordinates. Attach after filters that set the base colour.
    """

    def __init__(self, ambient: float = 0.35, diffuse: float = 0.75, specular: float = 0.0625,
                 shininess: float = 40.0, light_dir=(0.35, -0.45, -1.0), eye_dir=(0.0, 0.0, -1.0)) -> None:
        vfunc, ffunc = Function(_VERTEX), Function(_FRAGMENT)
        light = Varying("v_headlight", "vec2")
        vfunc["v_light"] = light
        ffunc["v_light"] = light
        self._normals = VertexBuffer(np.zeros((0, 3), np.float32))
        self._uploaded: np.ndarray | None = None
        vfunc["normal"] = self._normals
        super().__init__(vcode=vfunc, vhook="post", fcode=ffunc, fhook="post")
        self.vshader["ambient"] = float(ambient)
        self.vshader["diffuse"] = float(diffuse)
        self.vshader["specular"] = float(specular)
        self.vshader["shininess"] = float(shininess)
        self._light, self._eye = _unit(light_dir), _unit(eye_dir)
        self._set_directions()

    @property
    def light_dir(self) -> tuple[float, float, float]:
        return tuple(float(x) for x in self._light)

    def set_directions(self, light_dir, eye_dir=None) -> None:
        """The light's travel direction and (optionally) the camera's viewing direction."""
        light = _unit(light_dir)
        eye = self._eye if eye_dir is None else _unit(eye_dir)
        if np.array_equal(light, self._light) and np.array_equal(eye, self._eye):
            return
        self._light, self._eye = light, eye
        self._set_directions()

    def _set_directions(self) -> None:
        halfway = -(self._light + self._eye)
        norm = float(np.linalg.norm(halfway))
        halfway = -self._light if norm < 1e-9 else halfway / norm
        self.vshader["light_dir"] = tuple(float(x) for x in self._light)
        self.vshader["eye_dir"] = tuple(float(x) for x in self._eye)
        self.vshader["halfway"] = tuple(float(x) for x in halfway)

    # -- what vispy's mesh filters do with the visual ------------------------------------------
    def _upload_normals(self, event: object = None) -> None:
        mesh = self._visual.mesh_data if self._visual is not None else None
        if mesh is None:
            return
        normals = mesh.get_vertex_normals(indexed="faces")
        if normals is not None and normals is not self._uploaded:
            self._uploaded = normals
            self._normals.set_data(np.asarray(normals, np.float32), convert=True)

    def _attach(self, visual) -> None:
        super()._attach(visual)
        self.vshader["visual2scene"] = visual.transforms.get_transform("visual", "scene")
        self._uploaded = None
        self._upload_normals()
        visual.events.data_updated.connect(self._upload_normals)

    def _detach(self, visual) -> None:
        visual.events.data_updated.disconnect(self._upload_normals)
        super()._detach(visual)

"""Headless OpenGL rasterisation (EGL through moderngl): the one place the engine touches a GPU API.

Three passes share one mesh upload:
- ``render_ir``: the textured, shaded mesh as a near-field IR camera sees it: pinhole projection with
  radial lens distortion applied per vertex (the meshes are dense, so straight edges stay straight
  to well under a pixel), lit by an LED co-located with the camera (inverse-square fall-off,
  Lambert + a specular glint), plus ambient IR. Returns intensity, camera depth and coverage.
- ``render_source_coords``: for the 3D augmentation layer, the mesh seen from a perturbed camera,
  carrying per-vertex coordinates of where each vertex was seen in the *source* image, so the source
  image can be resampled through the 3-D shape (not a 2-D warp).
- ``bake_uv``: view-dependent shading rasterised in UV space, the avatar texture of a frame.

A standalone EGL context is made per thread (GL contexts are thread-bound), so a synthetic live
source in a worker thread and a training loop can each render.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from engine.camera import PinholeCamera
from engine.mesh_normals import vertex_normal_operator, vertex_normals

os.environ.setdefault("EGL_PLATFORM", "surfaceless")

_VERTEX_PROJECT = """
uniform mat4 mv;
uniform vec4 intr;      // fx fy cx cy (pixels)
uniform vec3 dist;      // k1 k2 k3 radial distortion
uniform vec2 size;      // W H
uniform vec2 depth_range;
vec4 project(vec3 p_cam) {
    float z = max(p_cam.z, 1e-3);
    vec2 xy = p_cam.xy / z;
    float r2 = dot(xy, xy);
    float d = 1.0 + r2 * (dist.x + r2 * (dist.y + r2 * dist.z));
    vec2 px = intr.xy * xy * d + intr.zw;
    vec2 ndc = vec2(2.0 * px.x / size.x - 1.0, 1.0 - 2.0 * px.y / size.y);
    float zn = 2.0 * (z - depth_range.x) / (depth_range.y - depth_range.x) - 1.0;
    return vec4(ndc * z, zn * z, z);
}
"""

_IR_VS = "#version 330\n" + _VERTEX_PROJECT + """
in vec3 in_pos; in vec3 in_normal; in vec2 in_uv; in float in_albedo; in float in_texw;
out vec3 v_pos; out vec3 v_normal; out vec2 v_uv; out float v_albedo; out float v_texw;
void main() {
    vec4 p = mv * vec4(in_pos, 1.0);
    v_pos = p.xyz; v_normal = mat3(mv) * in_normal; v_uv = in_uv;
    v_albedo = in_albedo; v_texw = in_texw;
    gl_Position = project(p.xyz);
}
"""

_IR_FS = """#version 330
uniform sampler2D albedo_tex;
uniform vec4 light;     // led power, ambient, specular, shininess
uniform float ref_dist; // distance (mm) at which the LED gives irradiance = power
in vec3 v_pos; in vec3 v_normal; in vec2 v_uv; in float v_albedo; in float v_texw;
out vec4 color;
void main() {
    vec3 n = normalize(v_normal);
    vec3 l = normalize(-v_pos);
    if (dot(n, l) < 0.0) n = -n;   // inner surfaces (mouth socket) are lit from inside the mouth
    float ndl = max(dot(n, l), 0.0);
    float fall = ref_dist * ref_dist / max(dot(v_pos, v_pos), 1.0);
    float a = mix(v_albedo, texture(albedo_tex, v_uv).r, v_texw);
    float irr = light.x * fall;
    float i = a * (irr * ndl + light.y) + light.z * irr * pow(ndl, light.w);
    color = vec4(i, v_pos.z, 1.0, 1.0);
}
"""

_SRC_VS = "#version 330\n" + _VERTEX_PROJECT + """
in vec3 in_pos; in vec3 in_src;
out vec3 v_src; out float v_z;
void main() {
    vec4 p = mv * vec4(in_pos, 1.0);
    v_src = in_src; v_z = p.z;
    gl_Position = project(p.xyz);
}
"""

_SRC_FS = """#version 330
in vec3 v_src; in float v_z;
out vec4 color;
void main() { color = vec4(v_src.xy, v_src.z, v_z); }
"""

_UV_VS = """#version 330
in vec3 in_normal; in vec2 in_uv;
out vec3 v_normal; out vec2 v_uv;
void main() {
    v_normal = in_normal; v_uv = in_uv;
    gl_Position = vec4(in_uv * 2.0 - 1.0, 0.0, 1.0);
}
"""

_UV_FS = """#version 330
uniform sampler2D albedo_tex;
uniform vec3 view_dir;   // unit vector from the face towards the viewer (head coordinates)
uniform vec3 light_dir;  // unit vector towards the key light
uniform vec4 light;      // key, ambient, specular, shininess
in vec3 v_normal; in vec2 v_uv;
out vec4 color;
void main() {
    vec3 n = normalize(v_normal);
    float a = texture(albedo_tex, v_uv).r;
    float diff = max(dot(n, light_dir), 0.0);
    vec3 h = normalize(light_dir + view_dir);
    float spec = pow(max(dot(n, h), 0.0), light.w);
    float vis = smoothstep(-0.1, 0.3, dot(n, view_dir));
    color = vec4(a * (light.x * diff + light.y) + light.z * spec * vis, 1.0, 1.0, 1.0);
}
"""


_local = threading.local()


def _with_context(method):
    """Run a renderer method with its GL context current, and release it afterwards, so a Qt/vispy
    context on the same thread is never left pointing at ours."""
    def wrapped(self, *args, **kwargs):
        with self.ctx:
            return method(self, *args, **kwargs)
    wrapped.__name__, wrapped.__doc__ = method.__name__, method.__doc__
    return wrapped


def gl_context():
    """The calling thread's headless GL context (EGL, falling back to the default backend)."""
    ctx = getattr(_local, "ctx", None)
    if ctx is not None and getattr(_local, "pid", None) != os.getpid():
        ctx = None  # a forked child (DataLoader worker) must not use the parent's context
    if ctx is None:
        import moderngl
        try:
            ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as egl_error:  # no EGL: try the platform default (GLX/OSMesa)
            try:
                ctx = moderngl.create_standalone_context()
            except Exception as err:
                raise RuntimeError(f"no headless OpenGL available (EGL: {egl_error}; default: {err}); "
                                   "install libegl1 libgl1-mesa-dri (see Makefile 'apt')") from err
        _local.ctx, _local.pid = ctx, os.getpid()
    return ctx


class MeshRenderer:
    """One mesh topology, rendered by any camera: uploads attributes, draws, reads float images.

    ``faces`` index the render vertices; ``uvs``/``albedo``/``texw`` are per render vertex.
    """

    def __init__(self, faces: np.ndarray, uvs: np.ndarray | None = None, albedo: np.ndarray | None = None,
                 texw: np.ndarray | None = None, depth_range: tuple[float, float] = (5.0, 400.0)):
        self.ctx = gl_context()
        with self.ctx:
            self._setup(faces, uvs, albedo, texw, depth_range)

    def _setup(self, faces, uvs, albedo, texw, depth_range) -> None:
        import moderngl
        self.faces = np.ascontiguousarray(faces, np.int32)
        self.n_verts = int(self.faces.max()) + 1
        self.depth_range = depth_range
        self.normal_op = vertex_normal_operator(self.faces, self.n_verts)
        n = self.n_verts
        uvs = np.zeros((n, 2), np.float32) if uvs is None else uvs
        albedo = np.full(n, 0.6, np.float32) if albedo is None else albedo
        texw = np.zeros(n, np.float32) if texw is None else texw
        c = self.ctx
        self.ibo = c.buffer(self.faces.tobytes())
        self.pos = c.buffer(reserve=n * 12)
        self.nrm = c.buffer(reserve=n * 12)
        self.src = c.buffer(reserve=n * 12)
        self.uv = c.buffer(np.ascontiguousarray(uvs, np.float32).tobytes())
        self.alb = c.buffer(np.ascontiguousarray(albedo, np.float32).tobytes())
        self.tw = c.buffer(np.ascontiguousarray(texw, np.float32).tobytes())
        self.ir_prog = c.program(vertex_shader=_IR_VS, fragment_shader=_IR_FS)
        self.src_prog = c.program(vertex_shader=_SRC_VS, fragment_shader=_SRC_FS)
        self.uv_prog = c.program(vertex_shader=_UV_VS, fragment_shader=_UV_FS)
        self.ir_vao = c.vertex_array(self.ir_prog, [(self.pos, "3f", "in_pos"), (self.nrm, "3f", "in_normal"),
                                                    (self.uv, "2f", "in_uv"), (self.alb, "f", "in_albedo"),
                                                    (self.tw, "f", "in_texw")], self.ibo)
        self.src_vao = c.vertex_array(self.src_prog, [(self.pos, "3f", "in_pos"), (self.src, "3f", "in_src")],
                                      self.ibo)
        self.uv_vao = c.vertex_array(self.uv_prog, [(self.nrm, "3f", "in_normal"),
                                                    (self.uv, "2f", "in_uv")], self.ibo)
        self._fbos: dict[tuple[int, int], moderngl.Framebuffer] = {}
        self._tex = None
        self._tex_key = None
        self._moderngl = moderngl

    # ----- state
    def _fbo(self, w: int, h: int):
        fbo = self._fbos.get((w, h))
        if fbo is None:
            c = self.ctx
            fbo = c.framebuffer(color_attachments=[c.texture((w, h), 4, dtype="f4")],
                                depth_attachment=c.depth_renderbuffer((w, h)))
            self._fbos[(w, h)] = fbo
        return fbo

    @_with_context
    def set_texture(self, texture: np.ndarray) -> None:
        """Albedo (h, w) float in [0, 1], row 0 = v=1 (image convention)."""
        tex = np.ascontiguousarray(np.flipud(texture), np.float32)
        key = (tex.shape, id(texture))
        if self._tex is None or self._tex.size != (tex.shape[1], tex.shape[0]):
            if self._tex is not None:
                self._tex.release()
            self._tex = self.ctx.texture((tex.shape[1], tex.shape[0]), 1, dtype="f4")
            self._tex.filter = (self._moderngl.LINEAR_MIPMAP_LINEAR, self._moderngl.LINEAR)
        self._tex.write(tex.tobytes())
        self._tex.build_mipmaps()
        self._tex_key = key

    @_with_context
    def set_vertices(self, verts: np.ndarray, normals: np.ndarray | None = None) -> None:
        verts = np.ascontiguousarray(verts, np.float32)
        if verts.shape != (self.n_verts, 3):
            raise ValueError(f"expected vertices of shape ({self.n_verts}, 3), got {verts.shape}")
        if normals is None:
            normals = vertex_normals(verts, self.faces, self.normal_op)
        self.pos.write(verts.tobytes())
        self.nrm.write(np.ascontiguousarray(normals, np.float32).tobytes())

    def _set_camera(self, prog, cam: PinholeCamera) -> None:
        prog["mv"].write(np.ascontiguousarray(cam.mv.T, np.float32).tobytes())
        prog["intr"].value = (cam.fx, cam.fy, cam.cx, cam.cy)
        prog["dist"].value = tuple(float(k) for k in cam.dist)
        prog["size"].value = (float(cam.width), float(cam.height))
        prog["depth_range"].value = self.depth_range

    def _draw(self, vao, w: int, h: int, clear: tuple[float, float, float, float]) -> np.ndarray:
        fbo = self._fbo(w, h)
        fbo.use()
        fbo.clear(*clear, depth=1.0)
        self.ctx.enable(self._moderngl.DEPTH_TEST)
        vao.render(self._moderngl.TRIANGLES)
        img = np.frombuffer(fbo.read(components=4, dtype="f4"), np.float32).reshape(h, w, 4)
        return img[::-1]

    # ----- passes
    @_with_context
    def render_ir(self, cam: PinholeCamera, led_power: float, ambient: float, specular: float = 0.15,
                  shininess: float = 40.0, ref_dist: float = 40.0) -> np.ndarray:
        """(H, W, 3): IR intensity (linear), camera depth in mm (0 = none) and coverage."""
        if self._tex is None:
            raise RuntimeError("set_texture() before render_ir()")
        p = self.ir_prog
        self._set_camera(p, cam)
        p["light"].value = (led_power, ambient, specular, shininess)
        p["ref_dist"].value = ref_dist
        self._tex.use(0)
        p["albedo_tex"].value = 0
        return self._draw(self.ir_vao, cam.width, cam.height, (0, 0, 0, 0))[..., :3]

    @_with_context
    def render_source_coords(self, cam: PinholeCamera, src_coords: np.ndarray) -> np.ndarray:
        """(H, W, 4): source pixel (x, y), source visibility and depth, for every target pixel."""
        self.src.write(np.ascontiguousarray(src_coords, np.float32).tobytes())
        self._set_camera(self.src_prog, cam)
        return self._draw(self.src_vao, cam.width, cam.height, (0, 0, 0, 0))

    @_with_context
    def bake_uv(self, size: int, view_dir: np.ndarray, light_dir: np.ndarray,
                light: tuple[float, float, float, float] = (0.8, 0.35, 0.25, 24.0)) -> np.ndarray:
        """(size, size) view-dependent shaded texture in UV space (row 0 = v=1), 0 where unmapped."""
        if self._tex is None:
            raise RuntimeError("set_texture() before bake_uv()")
        p = self.uv_prog
        p["view_dir"].value = tuple(float(x) for x in view_dir / np.linalg.norm(view_dir))
        p["light_dir"].value = tuple(float(x) for x in light_dir / np.linalg.norm(light_dir))
        p["light"].value = light
        self._tex.use(0)
        p["albedo_tex"].value = 0
        self.ctx.disable(self._moderngl.DEPTH_TEST)
        fbo = self._fbo(size, size)
        fbo.use()
        fbo.clear(0, 0, 0, 0)
        self.uv_vao.render(self._moderngl.TRIANGLES)
        img = np.frombuffer(fbo.read(components=4, dtype="f4"), np.float32).reshape(size, size, 4)
        self.ctx.enable(self._moderngl.DEPTH_TEST)
        return img[::-1, :, 0].copy()

    @_with_context
    def release(self) -> None:
        for obj in [self.ir_vao, self.src_vao, self.uv_vao, self.ibo, self.pos, self.nrm, self.src, self.uv,
                    self.alb, self.tw, self.ir_prog, self.src_prog, self.uv_prog, *self._fbos.values()]:
            obj.release()
        if self._tex is not None:
            self._tex.release()

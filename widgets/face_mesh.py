"""One face mesh inside a vispy scene, switchable between display modes.

Shared by the 3D viewer and the retargeting grid so both draw faces the same way and
both use the cheap per-frame path: the topology (faces, UVs, texture coordinates) is
set once, and each frame only replaces vertex positions (and colours in error mode). The
triangles are drawn in a vertex-cache-friendly order (widgets/triangle_order.py).

Everything here goes through vispy's extension points, not its internals:
- ``StreamingMeshVisual`` is a ``Visual`` subclass (vispy's documented recipe: shader code plus
  ``_prepare_draw`` / ``_prepare_transforms`` / ``_compute_bounds``) with MeshVisual's shaders.
  vispy's MeshVisual builds a new colour-transform shader function and colour buffer on every
  data change, which relinks the GL program each frame (several ms of regex/compile work); here
  the buffers are made once and only their contents change. It draws the V vertices through an
  index buffer, or the 3F face corners un-indexed in wireframe mode (the wireframe filter needs
  per-corner barycentrics). It offers what vispy's mesh filters read from a mesh visual:
  ``mesh_data`` and a ``data_updated`` event.
- ``FaceMeshData`` is a ``MeshData`` subclass whose smooth normals come from a sparse
  face->vertex sum (vispy's own ``np.add.at`` path costs a few ms per face per frame).
- ``FaceTextureFilter`` is a ``Filter`` with vispy's TextureFilter shader whose texture
  coordinates are handed over in the layout the visual draws (per vertex or per corner).

Filter order matters: texture and wireframe modulate the base colour, then shading
lights the result (texture -> wireframe -> shading). The wireframe filter is attached only in
wireframe mode.
"""
from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.color import Color
from vispy.geometry import MeshData
from vispy.gloo import IndexBuffer, Texture2D, VertexBuffer
from vispy.util.event import Event
from vispy.visuals import Visual
from vispy.visuals.filters import Filter, WireframeFilter
from vispy.visuals.shaders import Function, Varying

from widgets.headlight_shading import HeadlightShading
from widgets.triangle_order import cache_friendly_order

MODES: tuple[str, ...] = ("shaded", "textured", "wireframe", "error")
SKIN_RGBA = (0.82, 0.70, 0.62, 1.0)
WHITE_RGBA = (1.0, 1.0, 1.0, 1.0)

# MeshVisual's shaders with its pass-through colour transform and vec3 -> vec4 step written inline
_VERTEX_SHADER = """
varying vec4 v_base_color;

void main() {
    v_base_color = $base_color;
    gl_Position = $transform(vec4($position, 1.0));
}
"""
_FRAGMENT_SHADER = """
varying vec4 v_base_color;
void main() {
    gl_FragColor = v_base_color;
}
"""


def texture_as_uint8(texture: np.ndarray) -> np.ndarray:
    """(h, w) or (h, w, 3|4) uint8 or float in [0, 1] -> contiguous uint8 (h, w, 3|4).

    Gray textures are expanded to RGB so every texture takes the same GL path.
    """
    tex = np.asarray(texture)
    if tex.dtype != np.uint8:
        tex = (np.clip(tex.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if tex.ndim == 2:
        tex = np.repeat(tex[:, :, None], 3, axis=2)
    if tex.ndim != 3 or tex.shape[2] not in (3, 4):
        raise ValueError(f"texture must be (h, w), (h, w, 3) or (h, w, 4), got {tex.shape}")
    return np.ascontiguousarray(tex)


def face_to_vertex(faces: np.ndarray, n_vertices: int):
    """(V, F) sparse 0/1 matrix: summing each vertex's incident face normals is one product."""
    import scipy.sparse as sp
    rows = faces.ravel().astype(np.int64)
    cols = np.repeat(np.arange(len(faces)), 3)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_vertices, len(faces)))


def smooth_vertex_normals(vertices: np.ndarray, faces: np.ndarray, normal_op) -> np.ndarray:
    """(V, 3) unit vertex normals: the area-weighted sum of each vertex's face normals, with
    ``normal_op = face_to_vertex(faces, V)``."""
    v, f = vertices, faces
    normals = np.asarray(normal_op @ np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), np.float32)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


class FaceMeshData(MeshData):
    """MeshData whose smooth vertex normals are one sparse product, laid out the way they are drawn.

    ``normal_op`` is ``face_to_vertex(faces, len(vertices))``. ``per_vertex`` says how the visual
    draws: through an index buffer (True: ``get_vertex_normals(indexed='faces')``, which vispy's
    shading filter uploads, gives one normal per vertex) or as face corners (False: three per face,
    as in MeshData). ``normals`` (V, 3), when given, are those smooth normals already computed
    (the studio's frame worker computes them off the GUI thread).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, normal_op, per_vertex: bool,
                 vertex_colors: np.ndarray | None = None, normals: np.ndarray | None = None) -> None:
        super().__init__(vertices=vertices, faces=faces, vertex_colors=vertex_colors)
        self.normal_op = normal_op
        self.per_vertex = per_vertex
        self.smooth_normals: np.ndarray | None = normals
        self.drawn_normals: np.ndarray | None = None

    def get_vertex_normals(self, indexed: str | None = None) -> np.ndarray:
        if indexed not in (None, "faces"):
            raise ValueError(f"indexed must be None or 'faces', got {indexed!r}")
        if self.smooth_normals is None:
            self.smooth_normals = smooth_vertex_normals(self.get_vertices(), self.get_faces(), self.normal_op)
        if indexed is None:
            return self.smooth_normals
        if self.drawn_normals is None:
            self.drawn_normals = self.smooth_normals if self.per_vertex else self.smooth_normals[self.get_faces()]
        return self.drawn_normals


class StreamingMeshVisual(Visual):
    """A mesh visual whose per-frame upload keeps its shader program unchanged.

    The position and colour buffers are made once and refilled on each data change; the program
    relinks only when colours switch between uniform and per-vertex (a mode change).
    """

    def __init__(self) -> None:
        super().__init__(vcode=_VERTEX_SHADER, fcode=_FRAGMENT_SHADER)
        self.set_gl_state("opaque", depth_test=True, cull_face=False)  # faces are opaque: no blending
        self.events.add(data_updated=Event)
        self._draw_mode = "triangles"
        self._positions = VertexBuffer(np.zeros((0, 3), np.float32))
        self._colors = VertexBuffer(np.zeros((0, 4), np.float32))
        self.shared_program.vert["position"] = self._positions
        self._mesh_data: MeshData | None = None
        self._color = Color(SKIN_RGBA)
        self._ibo: IndexBuffer | None = None
        self._changed = False
        self.indexed = False  # draw V vertices through the index buffer instead of 3F corners
        self.freeze()

    # -- the interface vispy's mesh filters use ------------------------------------------------
    @property
    def mesh_data(self) -> MeshData | None:
        return self._mesh_data

    def set_data(self, meshdata: MeshData, color: tuple | None = None) -> None:
        """Show ``meshdata`` (uniform ``color`` where it has no vertex colours) from the next draw."""
        self._mesh_data = meshdata
        if color is not None:
            self._color = Color(color)
        self.mesh_data_changed()

    def mesh_data_changed(self) -> None:
        """Upload the data again and tell the filters (``data_updated``) before the next draw."""
        self._changed = True
        self.update()

    # -- indexed drawing ---------------------------------------------------------------------
    def set_index(self, faces: np.ndarray | None) -> None:
        """The triangles as an index buffer (uploaded once per topology); None: un-indexed only."""
        self._ibo = None if faces is None else IndexBuffer(np.ascontiguousarray(faces, np.uint32))

    @property
    def draws_indexed(self) -> bool:
        return self.indexed and self._ibo is not None

    # -- vispy's Visual protocol ----------------------------------------------------------------
    def _prepare_draw(self, view) -> bool | None:
        if self._changed:
            if not self._upload():
                return False
            self._changed = False
            self.events.data_updated()
        return None

    @staticmethod
    def _prepare_transforms(view) -> None:
        view.view_program.vert["transform"] = view.transforms.get_transform()

    def _compute_bounds(self, axis: int, view) -> tuple | None:
        bounds = None if self._mesh_data is None else self._mesh_data.get_bounds()
        if bounds is None:
            return None
        return bounds[axis] if axis < len(bounds) else (0, 0)

    def _upload(self) -> bool:
        md = self._mesh_data
        if md is None:
            return False
        indexed = self.draws_indexed
        v = md.get_vertices() if indexed else md.get_vertices(indexed="faces")
        if v is None:
            return False
        self._index_buffer = self._ibo if indexed else None
        self._positions.set_data(np.asarray(v, np.float32), convert=True)
        program = self.shared_program
        if md.has_vertex_color():
            colors = md.get_vertex_colors(indexed=None if indexed else "faces").astype(np.float32)
            self._colors.set_data(colors.reshape(-1, 4), convert=True)
            program.vert["base_color"] = self._colors
        else:
            program.vert["base_color"] = self._color.rgba
        return True


StreamingMesh = scene.visuals.create_visual_node(StreamingMeshVisual)


class FaceTextureFilter(Filter):
    """vispy's TextureFilter shader; texture coordinates are given in the layout the visual draws.

    ``set_texcoords`` takes one (u, v) per drawn vertex: per vertex for indexed drawing, per face
    corner otherwise. The texture is multiplied into the base colour when enabled.
    """

    def __init__(self) -> None:
        vfunc = Function("""
            void pass_coords() {
                $v_texcoords = $texcoords;
            }
        """)
        ffunc = Function("""
            void apply_texture() {
                if ($enabled == 1) {
                    gl_FragColor *= texture2D($u_texture, $texcoords);
                }
            }
        """)
        varying = Varying("v_texcoord", "vec2")
        vfunc["v_texcoords"] = varying
        ffunc["texcoords"] = varying
        self._texcoords = VertexBuffer(np.zeros((0, 2), np.float32))
        vfunc["texcoords"] = self._texcoords
        super().__init__(vcode=vfunc, vhook="pre", fcode=ffunc)
        self._texture: Texture2D | None = None
        self.texture_shape: tuple[int, ...] = ()
        self.set_texture(np.full((1, 1, 3), 255, np.uint8))
        self.enabled = False

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, enabled: bool) -> None:
        self._enabled = bool(enabled)
        self.fshader["enabled"] = 1 if enabled else 0

    def set_texcoords(self, texcoords: np.ndarray) -> None:
        self._texcoords.set_data(np.ascontiguousarray(texcoords, np.float32), convert=True)

    def set_texture(self, texture: np.ndarray) -> None:
        """A uint8 (h, w, 3|4) image; the GL texture is reused while the shape stays the same."""
        if self._texture is not None and self.texture_shape == texture.shape:
            self._texture.set_data(texture)
            return
        self._texture = Texture2D(texture, interpolation="linear")
        self.fshader["u_texture"] = self._texture
        self.texture_shape = texture.shape


class FaceMesh:
    """A mesh visual plus its texture / wireframe / shading filters and display mode."""

    def __init__(self, parent: scene.Node) -> None:
        self.visual = StreamingMesh(parent=parent)
        self.visual.visible = False
        self._faces: np.ndarray | None = None
        self._uvs: np.ndarray | None = None  # texture coordinates per vertex (v down)
        self._normal_op = None
        self._n_vertices = 0
        self._vertices: np.ndarray | None = None
        self._normals: np.ndarray | None = None  # given with the vertices, else computed here
        self._colors: np.ndarray | None = None
        self._mode = "shaded"
        self._has_texture = False
        self._texture_filter: FaceTextureFilter | None = None
        self._wireframe = WireframeFilter(color=(0.12, 0.12, 0.14, 1.0), width=0.7, enabled=False)
        self._shading = HeadlightShading(ambient=0.35, diffuse=0.75, specular=0.0625, shininess=40.0)
        self._attached: list = []
        # A placeholder triangle: the shading filter reads the mesh data (normals) when attached.
        self._show(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.uint32), face_to_vertex(
            np.array([[0, 1, 2]]), 3), None, SKIN_RGBA)
        self._attach_filters()

    # -- topology ---------------------------------------------------------------------
    def set_topology(self, faces: np.ndarray, uvs: np.ndarray | None = None) -> None:
        """Fix the triangles (F, 3) and optional per-vertex UVs (V, 2), OBJ convention (v up)."""
        faces = np.ascontiguousarray(faces, dtype=np.uint32)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3), got {faces.shape}")
        n = int(faces.max()) + 1 if faces.size else 0
        faces = cache_friendly_order(faces)  # the same triangles, fewer vertex-shader runs
        if uvs is not None:
            uvs = np.asarray(uvs, dtype=np.float32)
            if uvs.ndim != 2 or uvs.shape[1] != 2 or len(uvs) < n:
                raise ValueError(f"uvs must be (V, 2) with V >= {n}, got {uvs.shape}")
        self._faces, self._n_vertices = faces, n  # vertices beyond the faces' range are allowed
        self._normal_op = face_to_vertex(faces, n)
        self.visual.set_index(faces)
        self.visual.indexed = self._mode != "wireframe"
        self._vertices, self._colors = None, None
        self.visual.visible = False
        self._show(np.zeros((n, 3), np.float32), faces, self._normal_op, None, SKIN_RGBA)
        self._texture_filter, self._uvs = None, None
        if uvs is not None:
            self._uvs = np.column_stack([uvs[:, 0], 1.0 - uvs[:, 1]]).astype(np.float32)
            self._texture_filter = FaceTextureFilter()
            self._has_texture = False
            self._lay_out_texcoords()
        self._attach_filters()
        self._refresh()

    def _attach_filters(self) -> None:
        """Attach the filters in order; the wireframe filter only in wireframe mode, because even
        disabled it stays in the fragment shader (a sixth of the draw time with software GL)."""
        for filt in self._attached:
            self.visual.detach(filt)
        wire = self._wireframe if self._mode == "wireframe" else None
        wanted = [self._texture_filter, wire, self._shading]
        self._attached = [f for f in wanted if f is not None]
        for filt in self._attached:
            self.visual.attach(filt)
        self.visual.mesh_data_changed()  # the filters get the current data before the next draw

    def _lay_out_texcoords(self) -> None:
        """Texture coordinates as the visual draws: per vertex (indexed) or per face corner."""
        if self._texture_filter is None or self._uvs is None:
            return
        if self.visual.draws_indexed:
            self._texture_filter.set_texcoords(self._uvs[: self._n_vertices])
        else:
            self._texture_filter.set_texcoords(self._uvs[self._faces])

    # -- per-frame data -------------------------------------------------------------------
    def set_vertices(self, vertices: np.ndarray | None, normals: np.ndarray | None = None) -> None:
        """Replace vertex positions (V, 3) in mm; None hides the mesh. ``normals``: their smooth
        unit normals when already computed (else computed here, on the drawing thread)."""
        if vertices is None:
            self._vertices = self._normals = None
            self.visual.visible = False
            return
        vertices = np.asarray(vertices, dtype=np.float32)
        if self._faces is None:
            raise ValueError("set_topology must be called before set_vertices")
        if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < self._n_vertices:
            raise ValueError(f"vertices must be (V, 3) with V >= {self._n_vertices} for this "
                             f"topology, got {vertices.shape}")
        self._vertices = vertices
        self._normals = None if normals is None or len(normals) < self._n_vertices else \
            np.asarray(normals[: self._n_vertices], np.float32)
        self.visual.visible = True
        self._refresh()

    def set_vertex_colors(self, colors: np.ndarray | None) -> None:
        """Per-vertex RGBA (V, 4) in [0, 1] shown in error mode; None falls back to skin."""
        if colors is not None:
            colors = np.asarray(colors, dtype=np.float32)
            if colors.ndim != 2 or colors.shape[1] != 4 or len(colors) < self._n_vertices:
                raise ValueError(f"colours must be (V, 4) with V >= {self._n_vertices}, "
                                 f"got {colors.shape}")
        self._colors = colors
        if self._mode == "error":
            self._refresh()

    def set_texture(self, texture: np.ndarray | None) -> None:
        """Upload an albedo texture; reuses the GL texture when the size is unchanged."""
        if self._texture_filter is None:
            self._has_texture = False
            return
        if texture is None:
            self._has_texture = False
        else:
            self._texture_filter.set_texture(texture_as_uint8(texture))
            self._has_texture = True
        self._apply_mode()
        self.visual.update()

    @property
    def has_texture(self) -> bool:
        """True when textured mode can show a real texture (UVs and a texture given)."""
        return self._has_texture and self._texture_filter is not None

    # -- display mode -------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """One of MODES; textured without a texture and error without colours look shaded."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self._mode = mode
        self._apply_mode()
        self._refresh()

    def _apply_mode(self) -> None:
        textured = self._mode == "textured" and self.has_texture
        if self._texture_filter is not None:
            self._texture_filter.enabled = textured
        wire = self._mode == "wireframe"
        if wire != (self._wireframe in self._attached):
            self.visual.indexed = not wire  # the wireframe needs per-corner barycentrics
            self._attach_filters()
            self._lay_out_texcoords()
        self._wireframe.enabled = wire

    def _refresh(self) -> None:
        if self._faces is None or self._vertices is None:
            return
        textured = self._mode == "textured" and self.has_texture
        colors = self._colors if self._mode == "error" else None
        if colors is not None and len(colors) != len(self._vertices):
            colors = None  # stale colours from a different vertex count: show plain skin
        n = self._n_vertices  # vertices beyond the faces' range are never drawn
        self._show(self._vertices[:n], self._faces, self._normal_op, None if colors is None else colors[:n],
                   WHITE_RGBA if textured else SKIN_RGBA, self._normals)

    def _show(self, vertices: np.ndarray, faces: np.ndarray, normal_op, colors: np.ndarray | None,
              color: tuple, normals: np.ndarray | None = None) -> None:
        self.visual.set_data(FaceMeshData(vertices, faces, normal_op, self.visual.draws_indexed, colors,
                                          normals), color)

    # -- lighting ---------------------------------------------------------------------------
    def set_light_dir(self, direction: np.ndarray, view_dir: np.ndarray | None = None) -> None:
        """Direction the light travels and (optionally) the camera looks, in scene coordinates
        (for a head-light)."""
        self._shading.set_directions(direction[:3], None if view_dir is None else view_dir[:3])

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(min, max) corners of the current vertices, or None when there are none."""
        if self._vertices is None:
            return None
        return self._vertices.min(axis=0), self._vertices.max(axis=0)

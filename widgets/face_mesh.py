"""One face mesh inside a vispy scene, switchable between display modes.

Shared by the 3D viewer and the retargeting grid so both draw faces the same way and
both use the cheap per-frame path: the topology (faces, UVs, texture coordinates) is
set once, and each frame only replaces vertex positions (and colours in error mode).
vispy's MeshVisual draws un-indexed triangles, so per frame it gathers ``v[faces]``; the smooth
normals are computed here with a sparse face->vertex sum and handed to vispy (its own np.add.at
path costs a few ms per face). The wireframe filter is attached only in wireframe mode.

Filter order matters: texture and wireframe modulate the base colour, then shading
lights the result (texture -> wireframe -> shading).
"""
from __future__ import annotations

import numpy as np
from vispy import scene
from vispy.gloo import IndexBuffer, VertexBuffer
from vispy.visuals.filters import ShadingFilter, TextureFilter, WireframeFilter
from vispy.visuals.mesh import MeshVisual
from vispy.visuals.shaders import Function

MODES: tuple[str, ...] = ("shaded", "textured", "wireframe", "error")
SKIN_RGBA = (0.82, 0.70, 0.62, 1.0)
WHITE_RGBA = (1.0, 1.0, 1.0, 1.0)


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


class _StreamingMeshVisual(MeshVisual):
    """MeshVisual whose per-frame upload keeps its shader program unchanged.

    vispy's MeshVisual builds a new colour-transform shader function and a new colour
    buffer on every data change, which relinks the GL program each frame (several ms
    of regex/compile work). Here the function and buffers are created once and only
    their contents change; the program relinks only when colours switch between
    uniform and per-vertex (a mode change).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unfreeze()
        self._pass_color = Function("vec4 pass(vec4 color) { return color; }")
        self._color_buffer = VertexBuffer(np.zeros((0, 4), np.float32))
        self._lut_set = False
        self._ibo: IndexBuffer | None = None
        self.indexed = False  # draw V vertices through an index buffer instead of 3F corners
        self.freeze()

    def set_index(self, faces: np.ndarray | None) -> None:
        """The triangles as an index buffer (uploaded once per topology); None: un-indexed only."""
        self._ibo = None if faces is None else IndexBuffer(np.ascontiguousarray(faces, np.uint32))

    @property
    def draws_indexed(self) -> bool:
        return self.indexed and self._ibo is not None

    def _update_data(self) -> bool | None:
        md = self.mesh_data
        indexed = self.draws_indexed
        v = md.get_vertices() if indexed else md.get_vertices(indexed="faces")
        self._index_buffer = self._ibo if indexed else None
        if v is None:
            return False
        self._vertices.set_data(np.asarray(v, np.float32), convert=True)
        program = self.shared_program
        program.vert["position"] = self._vertices
        program.vert["to_vec4"] = self._ensure_vec4_func(3)
        program.vert["color_transform"] = self._pass_color
        if not self._lut_set:
            program["texture2D_LUT"] = self._cmap.texture_lut()
            self._lut_set = True
        if md.has_vertex_color():
            colors = md.get_vertex_colors(indexed=None if indexed else "faces").astype(np.float32)
            self._color_buffer.set_data(colors.reshape(-1, 4), convert=True)
            program.vert["base_color"] = self._color_buffer
        else:
            program.vert["base_color"] = self._color.rgba
        self._data_changed = False
        self.events.data_updated()
        return None


_StreamingMesh = scene.visuals.create_visual_node(_StreamingMeshVisual)


class _TextureFilter(TextureFilter):
    """vispy's TextureFilter, also for indexed drawing (one texcoord per vertex, not per corner)."""

    def _update_texcoords_buffer(self, texcoords: np.ndarray) -> None:
        visual = getattr(self, "_visual", None)
        if not self._attached or visual is None:
            return
        if getattr(visual, "draws_indexed", False):
            tc = texcoords[: len(visual.mesh_data.get_vertices())]
        else:
            tc = texcoords[visual.mesh_data.get_faces()]
        self._texcoords_buffer.set_data(np.ascontiguousarray(tc, np.float32), convert=True)


def _face_to_vertex(faces: np.ndarray, n_vertices: int):
    """(V, F) sparse 0/1 matrix: summing each vertex's incident face normals is one product."""
    import scipy.sparse as sp
    rows = faces.ravel().astype(np.int64)
    cols = np.repeat(np.arange(len(faces)), 3)
    return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_vertices, len(faces)))


class FaceMesh:
    """A mesh visual plus its texture / wireframe / shading filters and display mode."""

    def __init__(self, parent: scene.Node) -> None:
        # A placeholder triangle: vispy's shading filter needs mesh data when attached.
        self.visual = _StreamingMesh(vertices=np.zeros((3, 3), np.float32),
                                     faces=np.array([[0, 1, 2]], np.uint32),
                                     color=SKIN_RGBA, parent=parent)
        self.visual.visible = False
        self._faces: np.ndarray | None = None
        self._normal_op = None
        self._n_vertices = 0
        self._vertices: np.ndarray | None = None
        self._colors: np.ndarray | None = None
        self._mode = "shaded"
        self._has_texture = False
        self._texture_shape: tuple[int, ...] = ()
        self._texture_filter: TextureFilter | None = None
        self._wireframe = WireframeFilter(color=(0.12, 0.12, 0.14, 1.0), width=0.7, enabled=False)
        self._shading = ShadingFilter(shading="smooth", shininess=40, specular_coefficient=0.25,
                                      ambient_light=(1, 1, 1, 0.35), diffuse_light=(1, 1, 1, 0.75))
        self._attached: list = []
        self._attach_filters()

    # -- topology ---------------------------------------------------------------------
    def set_topology(self, faces: np.ndarray, uvs: np.ndarray | None = None) -> None:
        """Fix the triangles (F, 3) and optional per-vertex UVs (V, 2), OBJ convention (v up)."""
        faces = np.ascontiguousarray(faces, dtype=np.uint32)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3), got {faces.shape}")
        n = int(faces.max()) + 1 if faces.size else 0
        if uvs is not None:
            uvs = np.asarray(uvs, dtype=np.float32)
            if uvs.ndim != 2 or uvs.shape[1] != 2 or len(uvs) < n:
                raise ValueError(f"uvs must be (V, 2) with V >= {n}, got {uvs.shape}")
        self._faces, self._n_vertices = faces, n  # vertices beyond the faces' range are allowed
        self._normal_op = _face_to_vertex(faces, n)
        self.visual.set_index(faces)
        self.visual.indexed = self._mode != "wireframe"
        self._vertices, self._colors = None, None
        self.visual.visible = False
        self.visual.set_data(vertices=np.zeros((n, 3), np.float32), faces=faces, color=SKIN_RGBA)
        self._texture_filter = None
        if uvs is not None:
            texcoords = np.column_stack([uvs[:, 0], 1.0 - uvs[:, 1]]).astype(np.float32)
            self._texture_filter = _TextureFilter(np.full((1, 1, 3), 255, np.uint8), texcoords,
                                                  enabled=False)
            self._has_texture = False
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
        if wire is not None and self._faces is not None:
            self._wireframe._update_data()

    # -- per-frame data -------------------------------------------------------------------
    def set_vertices(self, vertices: np.ndarray | None) -> None:
        """Replace vertex positions (V, 3) in mm; None hides the mesh."""
        if vertices is None:
            self._vertices = None
            self.visual.visible = False
            return
        vertices = np.asarray(vertices, dtype=np.float32)
        if self._faces is None:
            raise ValueError("set_topology must be called before set_vertices")
        if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < self._n_vertices:
            raise ValueError(f"vertices must be (V, 3) with V >= {self._n_vertices} for this "
                             f"topology, got {vertices.shape}")
        self._vertices = vertices
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
            tex = texture_as_uint8(texture)
            if self._has_texture and self._texture_shape == tex.shape:
                self._texture_filter.fshader["u_texture"].value.set_data(tex)
            else:
                self._texture_filter.texture = tex
                self._texture_filter.fshader["u_texture"].value.interpolation = "linear"
                self._texture_shape = tex.shape
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
            if self._texture_filter is not None:
                self._texture_filter._update_texcoords_buffer(self._texture_filter.texcoords)
        self._wireframe.enabled = wire

    def _refresh(self) -> None:
        if self._faces is None or self._vertices is None:
            return
        textured = self._mode == "textured" and self.has_texture
        colors = self._colors if self._mode == "error" else None
        if colors is not None and len(colors) != len(self._vertices):
            colors = None  # stale colours from a different vertex count: show plain skin
        n = self._n_vertices  # vertices beyond the faces' range are never drawn
        self.visual.set_data(vertices=self._vertices[:n], faces=self._faces,
                             vertex_colors=None if colors is None else colors[:n],
                             color=WHITE_RGBA if textured else SKIN_RGBA)
        self._prime_normals()

    def _prime_normals(self) -> None:
        """Hand vispy the smooth vertex normals, computed with a sparse face->vertex sum.

        vispy's MeshData accumulates them with ``np.add.at``, several times slower (about 3 ms a
        face per frame); it keeps whatever sits in its normals cache, so filling it is enough.
        """
        md = self.visual.mesh_data
        if self._normal_op is None or not hasattr(md, "_vertex_normals") or self._vertices is None:
            return
        v = self._vertices[: self._n_vertices]
        f = self._faces
        face_normals = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        normals = np.asarray(self._normal_op @ face_normals, np.float32)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        md._vertex_normals = normals
        # what vispy's shading filter uploads: per vertex when drawing indexed, per corner otherwise
        md._vertex_normals_indexed_by_faces = normals if self.visual.draws_indexed else normals[f]

    # -- lighting ---------------------------------------------------------------------------
    def set_light_dir(self, direction: np.ndarray) -> None:
        """Direction the light travels, in scene coordinates (for a head-light)."""
        self._shading.light_dir = tuple(float(x) for x in direction[:3])

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(min, max) corners of the current vertices, or None when there are none."""
        if self._vertices is None:
            return None
        return self._vertices.min(axis=0), self._vertices.max(axis=0)

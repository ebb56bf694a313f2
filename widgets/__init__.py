"""Qt widgets and vispy visuals of MIA Studio.

Plain numpy data in, Qt signals out: nothing here imports torch or ``engine``; the
``app`` package connects these views to the session. One widget per module:
hmc_views, mesh_viewer, error_plots, summary_table, latency_plot, playback_bar,
source_panel, neutral_panel, retarget_grid, progress_dialog (+ helpers colormap,
face_mesh, face_camera, status_label).
"""

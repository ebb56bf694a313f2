"""Files on disk: the HMC capture format, the dataset layout, meshes, checkpoints, atomic writes.

- capture_schema.py: what capture.json and the per-frame .npy arrays hold, checked when read;
- capture_streams.py: the three camera streams (FFV1 videos or PNG folders);
- capture_reader.py: open and validate a capture folder; capture_writer.py: write one atomically;
- layout.py: where a dataset keeps captures, subjects, neutral meshes and avatars;
- mesh.py: mesh files in and out; checkpoint.py: model checkpoints; atomic.py: torn-free writes.
"""

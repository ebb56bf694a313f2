"""Running a trained model on frames as they come: frame sources (recorded, live cameras or streams,
synthetic), the streaming inference engine, and the ONNX export it can run through."""

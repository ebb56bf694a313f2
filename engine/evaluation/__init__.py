"""Measuring a trained model: region errors in mm and texture errors per frame, the paper-style
tables, cross-identity correspondence, and their plots. It never imports engine.training."""

"""Studies that join stored measurements and the model: calibration from a result set, closing the loop, fabric fits, projection tables for reports."""

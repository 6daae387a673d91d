"""The segmentation network behind the segscore metric: train, load, score."""

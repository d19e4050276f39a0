"""Readers and writers for segmentation data on disk (VOC layout, SBD, the synthetic stand-in)."""

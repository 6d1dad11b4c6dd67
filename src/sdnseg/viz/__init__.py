"""Figures: classical diffusion, segmentation error maps, SDN feature maps."""

"""Plots of fitted mixtures (matplotlib); every function returns its axes or figure."""

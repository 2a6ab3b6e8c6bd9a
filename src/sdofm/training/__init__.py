"""Pretraining the backbones with Lightning."""

"""Runners an experiment names: online (train/evaluate), supervised, OPE, A/B test."""

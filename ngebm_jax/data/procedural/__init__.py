"""Datasets generated from a seed, no download: the embedded default data and the focus task.

  embedded    10 procedural shape classes in clutter, with object masks and OOD sets
  focus_task  authentic vs generated images with artifact kinds and human maps (focus losses)
"""

"""KFP components, one folder each: ``core.py`` (logic, no kfp) and ``component.py`` (the shell).

Importing this package is cheap: it loads no component module, no kfp, torch or tensorflow.
"""

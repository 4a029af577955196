"""Code that runs in the scorer's child processes: the sandboxed candidate and the trusted judge.

Standard library only and no imports of ``bench``: each child starts with ``python -I -S`` and loads these
modules by path (``sys.path[0]`` is this folder), so nothing of the toolkit is imported into a sandbox.
"""

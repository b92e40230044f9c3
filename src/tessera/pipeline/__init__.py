"""The pipeline engine: transformation registry, resolution, cache keys, scheduler, executors.

Nothing is imported here eagerly, so that light commands stay light; import the submodules.
"""

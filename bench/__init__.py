"""The benchmark of the pipeline's export and load against its baselines (issue 10): ``bench/run.sh``.

See ``bench/README.md``. Not part of the installed package: run from the repository root.
"""

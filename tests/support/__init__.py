"""Helpers shared by the test modules (imported as ``tests.support.<module>``; fixtures stay in
``tests/conftest.py``).

- ``cases``: real bigWig and HDF5 files written with pyBigWig/h5py, and generated scoring cases;
- ``cli``: the repository, the installed ``bpnet-eval`` script, ``run_cli`` and ``ForkedCli``;
- ``metric_cases``: inputs and tolerances of the metric tests;
- ``reference``: independent float64 numpy/scipy values of the per-region columns.
"""

"""The workflow's steps: one module per Snakemake rule.

Each rule of ``workflow/rules/*.smk`` names its own script ``workflow/scripts/<rule>.py``,
which runs ``brainiron.steps.<rule>.main`` through :func:`brainiron.failures.run_step`. A
step is glue: it reads what its rule declares (``snakemake.input``, ``params``, ``output``,
``threads``), calls the library (:mod:`brainiron.registration`, :mod:`brainiron.regions`,
...) and writes its outputs atomically through :mod:`brainiron.io`. File I/O lives here;
numerics live in the library.
"""

"""brainiron: regional brain iron from QSM, R2* and multi-echo GRE in BIDS datasets.

Public API
----------
run(bids_dir, out_dir, ...)
    Run the whole workflow (Snakemake) on a BIDS dataset; see :mod:`brainiron.workflow`.
regional_stats(map_img, label_img, ...)
    Regional statistics of a map in a label image, as a pandas DataFrame.
generate_phantom(out_dir, ...)
    Write a phantom BIDS dataset with known iron and ground truth.
discover(bids_dir, ...), validate_subject(subject)
    Find and check a BIDS dataset's images.
"""

__version__ = "0.1.0"

from .bids import discover, validate_subject  # noqa: E402
from .phantom import PhantomConfig, generate_phantom  # noqa: E402
from .regions import regional_statistics, regional_stats  # noqa: E402
from .workflow import run  # noqa: E402

__all__ = [
    "PhantomConfig",
    "__version__",
    "discover",
    "generate_phantom",
    "regional_statistics",
    "regional_stats",
    "run",
    "validate_subject",
]

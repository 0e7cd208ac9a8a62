"""convtools: the mathematics of adding neurons between two 2-D convolutions.

The helper package of the notebook collection: linearization of a pair of convolutions
(:mod:`convtools.geometry`), the second-order statistics S and N
(:mod:`convtools.statistics`), TINY's closed form and the exact solver
(:mod:`convtools.solvers`), the new layers (:mod:`convtools.layers`), and the parameter
checks, seeding and progress bars the notebooks share (:mod:`convtools.notebook`).
"""

from . import notebook
from .geometry import (
    apply_product_kernel,
    conv_output_size,
    kernel_positions,
    mask_tensor_t,
    product_kernel,
    unfold_input,
    unfold_twice,
    unfolded_pair,
)
from .layers import (
    METHODS,
    grow,
    layers_from_factors,
    layers_from_full_factors,
    refactor_full,
    relative_residual,
    theta_of_factors,
)
from .solvers import (
    exact_neurons,
    optimal_added_parameters,
    optimal_delta,
    project_goal,
    solve_psd,
    sqrt_inverse_psd,
)
from .statistics import (
    CHUNK_ELEMENTS,
    KINDS,
    StatisticsAccumulator,
    n_full_to_tiny,
    n_tiny_to_full,
    objective,
    read_counts,
    s_tiny_from_full,
    statistics,
    theta_from_tiny,
    theta_to_tiny,
    tiny_objective,
)

__all__ = [
    "notebook",
    "CHUNK_ELEMENTS",
    "KINDS",
    "METHODS",
    "StatisticsAccumulator",
    "apply_product_kernel",
    "conv_output_size",
    "exact_neurons",
    "grow",
    "kernel_positions",
    "layers_from_factors",
    "layers_from_full_factors",
    "mask_tensor_t",
    "n_full_to_tiny",
    "n_tiny_to_full",
    "objective",
    "optimal_added_parameters",
    "optimal_delta",
    "product_kernel",
    "project_goal",
    "read_counts",
    "refactor_full",
    "relative_residual",
    "s_tiny_from_full",
    "solve_psd",
    "sqrt_inverse_psd",
    "statistics",
    "theta_from_tiny",
    "theta_of_factors",
    "theta_to_tiny",
    "tiny_objective",
    "unfold_input",
    "unfold_twice",
    "unfolded_pair",
]

__version__ = "0.1.0"

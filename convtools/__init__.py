"""convtools: the mathematics of adding neurons between two 2-D convolutions.

The helper package of the notebook collection, usable on its own. Its submodules:

- :mod:`convtools.geometry`: a pair of convolutions as one linear map of the input
  unfolded twice (``unfold_input``, ``unfold_twice``, ``mask_tensor_t``, Θ);
- :mod:`convtools.stats`: the second-order statistics S and N (tiny and full);
- :mod:`convtools.layouts`: the layouts of N and Θ, and the objectives that read them;
- :mod:`convtools.closed_form`: PSD solves, TINY's optimal neurons, the optimal update
  of one convolution and the projected goal;
- :mod:`convtools.exact`: the exact k-channel optimum (Gauss-Newton, variable
  projection, alternating least squares);
- :mod:`convtools.layers`: the new layers, ``fit_neurons`` and ``grow``.

The most used names are re-exported here; everything else lives in its submodule.
Importing the package imports torch and nothing else heavy.
"""

from .closed_form import optimal_added_parameters, optimal_delta, project_goal, solve_psd
from .exact import exact_neurons
from .geometry import (
    conv_output_size,
    mask_tensor_t,
    product_kernel,
    unfold_input,
    unfold_twice,
)
from .layers import fit_neurons, grow, layers_from_factors, relative_residual
from .layouts import objective
from .stats import StatisticsAccumulator, statistics

__all__ = [
    "StatisticsAccumulator",
    "conv_output_size",
    "exact_neurons",
    "fit_neurons",
    "grow",
    "layers_from_factors",
    "mask_tensor_t",
    "objective",
    "optimal_added_parameters",
    "optimal_delta",
    "product_kernel",
    "project_goal",
    "relative_residual",
    "solve_psd",
    "statistics",
    "unfold_input",
    "unfold_twice",
]

__version__ = "0.2.0"

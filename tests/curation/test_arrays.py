import numpy as np
import pytest

from canvas.curation.arrays import true_cells


@pytest.mark.parametrize("shape", [(5, 7), (1, 1), (0, 3), (3, 0), (400, 256)])
@pytest.mark.parametrize("density", [0.0, 0.001, 0.3, 1.0])
def test_true_cells_are_nonzeros_cells_in_the_same_order(shape: tuple[int, int], density: float) -> None:
    # close_pairs keeps row < column from this order, and the banded search links pairs in it.
    mask = np.random.default_rng(0).random(shape) < density
    rows, cols = true_cells(mask)
    want_rows, want_cols = np.nonzero(mask)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(cols, want_cols)
    assert rows.dtype == want_rows.dtype and cols.dtype == want_cols.dtype


def test_true_cells_refuse_a_mask_that_is_not_2d() -> None:
    with pytest.raises(ValueError, match="2-D"):
        true_cells(np.ones(3, dtype=bool))

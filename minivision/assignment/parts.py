"""The assignment parts: what each is worth, the instructor tests that grade it, the
tutorials that teach it.

Each part's tests are pytest node ids in the instructor repository's ``tests/``, chosen so
that every one of them runs the part's solution regions: a student copy with the part
left out fails them all, the instructor copy passes them all. Grading runs on the CPU
(``-m "not gpu"``), so a parity test's "cuda" cases are left out and its "cpu" case named. Tutorials are named by
their number, ``"06"`` standing for ``tutorials/06_*.py``, so a tutorial can be renamed
without touching this table. The reference ``nms`` calls ``box_iou``, so its tests need
both. A copy without a part also leaves out that part's fast paths (Numba and CUDA kernels:
graded nowhere, as grading runs on the CPU), so that it answers on no device.
"""

from __future__ import annotations

from dataclasses import dataclass

REFERENCE = "tests/reference/"
ACTIVATION = REFERENCE + "test_activation.py::"
LOSS = REFERENCE + "test_loss.py::"
IOU = "tests/ops/test_box_iou.py::"
NMS = "tests/ops/test_nms.py::"
ROI = "tests/ops/test_roi_pool.py::"


@dataclass(frozen=True)
class Part:
    """One gradable piece of the library: its name in the markers, points, tests, tutorials."""

    name: str
    points: int
    tests: tuple[str, ...]
    tutorials: tuple[str, ...]


PARTS = {
    part.name: part
    for part in (
        Part(
            "conv",
            20,
            tuple(
                REFERENCE + "test_conv.py::" + name
                for name in (
                    "test_conv2d_matches_torch[reference-cpu]",
                    "test_conv_transpose2d_matches_torch[reference-cpu]",
                    "test_reference_conv2d_gradcheck",
                    "test_reference_conv_transpose2d_gradcheck",
                    "test_im2col_and_col2im_are_adjoint",
                    "test_reference_conv_transpose2d_is_the_adjoint_of_conv2d",
                    "test_im2col_columns_by_hand",
                    "test_col2im_adds_where_windows_overlap",
                    "test_transposed_convolution_stamps_the_kernel_by_hand[overlapping]",
                    "test_transposed_convolution_stamps_the_kernel_by_hand[side_by_side]",
                )
            ),
            ("02", "06"),
        ),
        Part(
            "pool",
            20,
            tuple(
                REFERENCE + "test_pool.py::" + name
                for name in (
                    "test_max_pool2d_maxima_and_switches_match_torch",
                    "test_max_pool2d_backward_matches_torch",
                    "test_max_unpool2d_and_its_backward_match_torch",
                    "test_max_pool2d_gradcheck_without_ties",
                    "test_max_unpool2d_gradcheck",
                    "test_lecture_example_pool_then_unpool[reference]",
                    "test_ties_go_to_the_first_maximum_in_row_major_window_order[reference]",
                    "test_overlapping_windows_add_their_gradients_at_a_shared_switch[reference]",
                    "test_padding_never_wins_and_switches_index_the_unpadded_input[reference]",
                    "test_ceil_mode_keeps_windows_that_hang_off_the_edge[reference]",
                    "test_a_window_of_padding_only_keeps_torchs_switch_and_passes_no_gradient[reference]",
                    "test_unpool_to_an_odd_output_size[reference]",
                )
            ),
            ("06",),
        ),
        Part(
            "iou",
            10,
            tuple(
                IOU + name
                for name in (
                    "test_hand_checked_values",
                    "test_identical_boxes_give_one_and_zero_area_boxes_give_zero",
                    "test_iou_matches_brute_force_and_is_symmetric_in_unit_range",
                )
            )
            + tuple(
                REFERENCE + "test_boxes.py::" + name
                for name in (
                    "test_equals_the_brute_force_oracle_and_is_symmetric",
                    "test_hand_checked_values",
                )
            ),
            ("01",),
        ),
        Part(
            "nms",
            20,
            tuple(
                NMS + name
                for name in (
                    "test_nms_invariants_and_brute_force",
                    "test_batched_nms_invariants_and_brute_force",
                    "test_nms_continuous_boxes_of_mixed_sizes",
                    "test_hand_case_duplicates_ties_and_threshold",
                    "test_batched_nms_never_suppresses_across_classes",
                    "test_batched_nms_with_large_coordinates_and_labels",
                )
            )
            + tuple(
                REFERENCE + "test_nms.py::" + name
                for name in (
                    "test_hand_case",
                    "test_a_float32_iou_meets_the_threshold_as_given",
                )
            ),
            ("04",),
        ),
        Part(
            "roi",
            20,
            tuple(
                ROI + name
                for name in (
                    "test_overlapping_bins_add_their_gradients_at_a_shared_switch",
                    "test_two_rois_sharing_a_maximum_accumulate_and_ties_keep_the_first",
                    "test_corners_round_halves_away_from_zero",
                    "test_nan_never_wins_and_a_bin_of_minus_inf_gives_minus_flt_max",
                    "test_equals_the_reference_to_the_bit",
                    "test_gradcheck",
                    "test_box_formats_agree",
                )
            )
            + (
                REFERENCE
                + "test_roi_pool.py::test_equals_the_restatement_of_torchvision_to_the_bit",
            ),
            ("11",),
        ),
        Part(
            "softmax",
            10,
            tuple(
                ACTIVATION + name
                for name in (
                    "test_matches_torch[softmax]",
                    "test_gradcheck[softmax]",
                    "test_softmax_hand_case",
                    "test_gradient_sums_to_zero_along_dim[softmax]",
                )
            ),
            ("09",),
        ),
        Part(
            "cross_entropy",
            10,
            (
                ACTIVATION + "test_matches_torch[log_softmax]",
                LOSS + "test_cross_entropy_matches_torch",
                LOSS + "test_nll_loss_matches_torch",
                LOSS + "test_cross_entropy_gradcheck_with_weights_and_ignore[mean]",
                LOSS + "test_hand_case_uniform_scores_ignored_sample_and_weighted_mean",
            ),
            ("09",),
        ),
        Part(
            "relu",
            5,
            tuple(
                ACTIVATION + name
                for name in (
                    "test_matches_torch[relu]",
                    "test_gradcheck[relu]",
                    "test_relu_hand_case",
                )
            ),
            ("09",),
        ),
        Part(
            "sigmoid",
            5,
            tuple(
                ACTIVATION + name
                for name in (
                    "test_matches_torch[sigmoid]",
                    "test_gradcheck[sigmoid]",
                    "test_sigmoid_hand_case",
                )
            ),
            ("09",),
        ),
    )
}


def check_parts(names) -> list[str]:
    """``names`` (an iterable, or one comma-separated string) as a list of known part names,
    in the order given, without repeats. Raises ValueError naming an unknown part and
    listing the known ones, or when no part is given."""
    if isinstance(names, str):
        names = names.split(",")
    chosen = list(dict.fromkeys(name.strip() for name in names if name.strip()))
    unknown = [name for name in chosen if name not in PARTS]
    if unknown:
        raise ValueError(
            f"unknown assignment part {', '.join(map(repr, unknown))}; "
            f"known parts: {', '.join(PARTS)}"
        )
    if not chosen:
        raise ValueError(f"no assignment part given; known parts: {', '.join(PARTS)}")
    return chosen

"""Log text as a person reads it: no escape codes, one row per line, the last redraw of a progress bar."""

from __future__ import annotations

from spottrain.functions.shared.logtext import readable, readable_lines

# Byte for byte what Chainer 7.8.1 writes to a pipe with PrintReport(['epoch', 'main/loss']) and
# ProgressBar(update_interval=2): each bar update erases below the cursor (ESC[J), draws four rows and
# moves back up (ESC[4A); PrintReport erases and prints its row where the bar was.
BAR_1 = (
    "     total [########..........................................] 16.67%\n"
    "this epoch [#########################.........................] 50.00%\n"
    "         2 iter, 0 epoch / 3 epochs\n"
    "       inf iters/sec. Estimated time to finish: 0:00:00.\n"
)
BAR_2 = (
    "     total [################..................................] 33.33%\n"
    "this epoch [..................................................]  0.00%\n"
    "         4 iter, 1 epoch / 3 epochs\n"
    "     769.6 iters/sec. Estimated time to finish: 0:00:00.010395.\n"
)
CHAINER_RUN = f"epoch       main/loss \n\x1b[J{BAR_1}\x1b[4A\x1b[J1           0.696091    \n\x1b[J{BAR_2}\x1b[4A"


def test_given_chainer_print_report_and_progress_bar_then_the_rows_and_only_the_latest_bar_remain():
    assert readable_lines(CHAINER_RUN) == [
        "epoch       main/loss",
        "1           0.696091",
        *BAR_2.rstrip("\n").split("\n"),
    ]


def test_given_a_finished_chainer_run_then_its_closing_erase_leaves_only_the_report():
    finished = CHAINER_RUN + "\x1b[J2           0.69668     \n\x1b[J"

    assert readable(finished) == "epoch       main/loss\n1           0.696091\n2           0.69668\n"


def test_given_carriage_return_redraws_then_the_last_redraw_of_the_line_is_kept():
    tqdm_like = (
        "epoch 1:  10%|#         | 1/10\repoch 1:  50%|#####     | 5/10\repoch 1: 100%|##########| 10/10\nsaved\n"
    )

    assert readable_lines(tqdm_like) == ["epoch 1: 100%|##########| 10/10", "saved"]


def test_given_a_redraw_cut_off_by_the_end_of_the_text_then_the_last_drawn_state_stays():
    assert readable_lines("loading 10%\rloading 60%\r") == ["loading 60%"]
    assert readable_lines("windows line\r\nnext\r\n") == ["windows line", "next"]


def test_given_colours_titles_and_stray_controls_then_only_the_text_is_left():
    text = "\x1b]0;training: epoch 3\x07\x1b[1;31mERROR\x1b[0m: loss is \x1b[33mnan\x1b[m\x08 \x07at step 7\n"

    assert readable(text) == "ERROR: loss is nan at step 7\n"


def test_given_a_cursor_move_above_the_text_then_nothing_is_overwritten():
    # A follow-mode chunk may move up into rows printed by an earlier chunk: those are not ours to erase.
    assert readable_lines("row 1\n\x1b[4A\x1b[Jbar\n") == ["row 1", "bar"]


def test_given_plain_lines_then_they_pass_unchanged():
    assert readable("a\n\n  b\tc\n") == "a\n\n  b\tc\n"

"""How far back an import reads the request log: newest day first, doubling spans, within the look-back."""

from datetime import date

from churnflow.outcomes.label_import import _spans

DAY = date(2026, 11, 20)


def test_spans_double_back_from_the_import_day_and_stop_at_the_look_back():
    assert _spans(date(2026, 11, 7), DAY) == [
        (DAY, DAY),
        (date(2026, 11, 18), date(2026, 11, 19)),
        (date(2026, 11, 14), date(2026, 11, 17)),
        (date(2026, 11, 7), date(2026, 11, 13)),  # cut at the look-back's first day (8 days would reach the 6th)
    ]


def test_a_look_back_of_zero_days_reads_the_import_day_only():
    assert _spans(DAY, DAY) == [(DAY, DAY)]


def test_a_long_look_back_takes_a_logarithmic_number_of_spans():
    spans = _spans(date(2025, 10, 16), DAY)  # 400 days back
    assert len(spans) == 9 and spans[-1][0] == date(2025, 10, 16)
    covered = sum((end - start).days + 1 for start, end in spans)
    assert covered == (DAY - date(2025, 10, 16)).days + 1  # every day once, none twice
